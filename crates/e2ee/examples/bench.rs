//! Benchmark: per-frame SFrame cost and time to add one member to a group.
//!
//! `cargo run --release -p conclave-e2ee --example bench`
//! Prints medians. Frame numbers are per single frame (each timed alone);
//! "add" numbers split the work into the committer building the commit and
//! applying it, one existing member processing it, and the joiner
//! processing the Welcome.

use conclave_e2ee::server::DeliveryServiceSigner;
use conclave_e2ee::{Codec, Member, SframeContext};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn frames(size: usize, runs: usize) {
    let key = [3u8; 16];
    let mut a = SframeContext::from_base_key(&key, 1, 0).expect("ctx");
    let mut b = SframeContext::from_base_key(&key, 1, 1).expect("ctx");
    let frame: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut out = Vec::with_capacity(size + 64);
    let mut cts = Vec::with_capacity(runs);
    let mut enc = Vec::with_capacity(runs);
    for _ in 0..100 {
        a.encrypt(Codec::Opus, &frame, &mut out).expect("enc");
    }
    for _ in 0..runs {
        let t = Instant::now();
        a.encrypt(Codec::Opus, &frame, &mut out).expect("enc");
        enc.push(t.elapsed());
        cts.push(out.clone());
    }
    let mut pt = Vec::with_capacity(size + 64);
    let mut dec = Vec::with_capacity(runs);
    for ct in &cts {
        let t = Instant::now();
        b.decrypt(Codec::Opus, ct, &mut pt, 0).expect("dec");
        dec.push(t.elapsed());
    }
    println!(
        "sframe {size:>6} B: encrypt median {:>8.2} us, decrypt median {:>8.2} us ({runs} runs)",
        median(enc).as_secs_f64() * 1e6,
        median(dec).as_secs_f64() * 1e6
    );
}

const ROOM: &[u8] = b"bench-room";
const SECRET: &[u8] = b"bench-invite-secret-0123456789";

fn group_of(n: usize, ds: &DeliveryServiceSigner) -> Vec<Member> {
    let mut alice = Member::new("m0", ROOM, Some(SECRET)).expect("m");
    alice
        .create_group(&[ds.external_sender().expect("es")], 0)
        .expect("create");
    let mut members = vec![alice];
    let mut joiners = Vec::new();
    for i in 1..n {
        let mut j = Member::new(&format!("m{i}"), ROOM, Some(SECRET)).expect("m");
        let req = j.join_request().expect("req");
        members[0].process_incoming(&req, 0).expect("jr");
        joiners.push(j);
    }
    if n > 1 {
        let c = members[0].commit_pending().expect("c").expect("some");
        members[0].process_incoming(&c.commit, 0).expect("own");
        let w = c.welcome.expect("welcome");
        for mut j in joiners {
            j.process_incoming(&w, 0).expect("welcome");
            members.push(j);
        }
    }
    members
}

fn add_member(n: usize, trials: usize) {
    let ds = DeliveryServiceSigner::generate("bench-ds").expect("ds");
    let mut members = group_of(n, &ds);
    let (mut commit_t, mut process_t, mut welcome_t) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..trials {
        let mut j = Member::new(&format!("joiner{t}"), ROOM, Some(SECRET)).expect("m");
        let req = j.join_request().expect("req");
        let t0 = Instant::now();
        members[0].process_incoming(&req, 0).expect("jr");
        let c = members[0].commit_pending().expect("c").expect("some");
        members[0].process_incoming(&c.commit, 0).expect("own");
        commit_t.push(t0.elapsed());
        let t1 = Instant::now();
        members[1].process_incoming(&c.commit, 0).expect("other");
        process_t.push(t1.elapsed());
        for m in members.iter_mut().skip(2) {
            m.process_incoming(&c.commit, 0).expect("rest");
        }
        let t2 = Instant::now();
        j.process_incoming(&c.welcome.expect("w"), 0)
            .expect("welcome");
        welcome_t.push(t2.elapsed());
        // Remove the joiner again (server proposal + commit) to keep size n.
        let leaf = j.own_leaf().expect("leaf");
        let epoch = members[0].epoch().expect("epoch");
        let p = ds.remove_proposal(ROOM, epoch, leaf).expect("rm");
        for m in members.iter_mut() {
            m.process_incoming(&p, 0).expect("p");
        }
        let c = members[0].commit_pending().expect("c").expect("some");
        for m in members.iter_mut() {
            m.process_incoming(&c.commit, 0).expect("c");
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "add 1 to group of {n:>2}: committer (verify+commit+merge) {:>7.2} ms, member processes commit {:>7.2} ms, joiner processes Welcome {:>7.2} ms ({trials} trials)",
        ms(median(commit_t)),
        ms(median(process_t)),
        ms(median(welcome_t))
    );
}

fn main() {
    frames(200, 20_000);
    frames(30_000, 2_000);
    for n in [2, 10, 50] {
        add_member(n, 9);
    }
}
