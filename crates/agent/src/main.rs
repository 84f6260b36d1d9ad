//! The `conclave-agent` command line: runs one or many synthetic
//! participants in one process and prints what they receive.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use conclave_agent::{
    report, spawn, InviteSecret, ParticipantConfig, ParticipantHandle, ParticipantStats, RoomUrl,
    VideoClass,
};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(
    name = "conclave-agent",
    version,
    about = "A native Conclave participant for load and robustness tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join a room, send synthetic media, report what arrives.
    Join(JoinArgs),
}

#[derive(clap::Args)]
struct JoinArgs {
    /// Room link, like http://127.0.0.1:8080/myroom, or an invite link with
    /// the meeting's secret (http://127.0.0.1:8080/myroom#s=…).
    url: String,
    /// Invite link whose #s=… secret to use (when the room URL has none).
    #[arg(long)]
    invite: Option<String>,
    /// Admit everyone who knocks (asks to join without the invite secret).
    #[arg(long)]
    admit_knocks: bool,
    /// Display name (numbered when --participants > 1).
    #[arg(long, default_value = "agent")]
    name: String,
    /// How many participants to run in this process.
    #[arg(long, default_value_t = 1)]
    participants: usize,
    /// Camera: 720p (1.5 Mbps), 360p (500 kbps), 180p (150 kbps, 15 fps) or off.
    #[arg(long, default_value = "360p", value_parser = parse_video)]
    video: Video,
    /// Microphone: on or off.
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    audio: bool,
    /// Publish nothing; only receive.
    #[arg(long)]
    receive_only: bool,
    /// Count received packets only (no frame reassembly, no decryption): cheapest receiving.
    #[arg(long)]
    count_only: bool,
    /// Leave after this many seconds (default: run until Ctrl-C or an error).
    #[arg(long)]
    duration: Option<f64>,
    /// Chat message to send once in the encrypted group (repeatable; first participant).
    #[arg(long)]
    chat: Vec<String>,
    /// Read stdin lines and send them as chat (from the first participant).
    #[arg(long)]
    interactive: bool,
    /// Seconds between statistics reports (0: only the final summary).
    #[arg(long, default_value_t = 5.0)]
    report_every: f64,
    /// Warn when a remote participant sends nothing for this many seconds.
    #[arg(long, default_value_t = 3.0)]
    no_media_after: f64,
    /// Spread participants over rooms of this many (`<room>-1`, `<room>-2`, …)
    /// so that load grows linearly instead of with the square of a single room.
    #[arg(long)]
    room_size: Option<usize>,
    /// Milliseconds between successive joins when running many participants.
    #[arg(long, default_value_t = 50)]
    join_interval_ms: u64,
    /// Runtime worker threads (1 = everything on one thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print notices and reports as JSON lines.
    #[arg(long)]
    json: bool,
    /// Refresh each participant's own keys every this many seconds (an MLS
    /// self-update commit: a new epoch each time), to exercise epoch changes
    /// while media flows.
    #[arg(long)]
    key_update_every: Option<f64>,
}

/// A camera class or off (a newtype: clap treats `Option` fields as optional flags).
#[derive(Clone, Copy)]
struct Video(Option<VideoClass>);

fn parse_video(s: &str) -> Result<Video, String> {
    VideoClass::parse(s)
        .map(Video)
        .ok_or_else(|| format!("{s:?}: expected 720p, 360p, 180p or off"))
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}

fn main() -> ExitCode {
    let Command::Join(args) = Cli::parse().command;
    let mut url = match RoomUrl::parse(&args.url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(invite) = &args.invite {
        match RoomUrl::parse(invite) {
            Ok(RoomUrl {
                secret: Some(secret),
                ..
            }) => {
                if url.secret.is_none() {
                    url.secret = Some(secret);
                }
            }
            Ok(_) => {
                eprintln!("error: --invite {invite:?} has no #s=… secret");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("error: --invite: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if url.secure {
        eprintln!("error: https/wss rooms are not supported yet by conclave-agent; use the loopback http:// address");
        return ExitCode::from(2);
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args, url))
}

async fn run(args: JoinArgs, url: RoomUrl) -> ExitCode {
    conclave_agent::init_crypto();
    let (notice_tx, mut notice_rx) = mpsc::unbounded_channel::<conclave_agent::Tagged>();
    let json = args.json;
    let printer = tokio::spawn(async move {
        // Every local participant receives each chat message and sees each
        // security code; print them once (`codes` also holds such texts).
        let mut last_chat: Option<u32> = None;
        let mut codes = std::collections::HashSet::new();
        while let Some(t) = notice_rx.recv().await {
            match &t.notice {
                conclave_agent::Notice::Chat { seq, .. } => {
                    if last_chat.is_some_and(|last| *seq <= last) {
                        continue;
                    }
                    last_chat = Some(*seq);
                }
                conclave_agent::Notice::SecurityCode { code, .. }
                    if !codes.insert(code.clone()) =>
                {
                    continue;
                }
                // Every participant sharing a made-up secret says the same.
                conclave_agent::Notice::E2ee(text)
                    if text.starts_with("no invite secret") && !codes.insert(text.clone()) =>
                {
                    continue;
                }
                _ => {}
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"type": "notice", "participant": t.participant, "message": t.notice.to_string()})
                );
            } else if let conclave_agent::Notice::Chat { .. } = t.notice {
                println!("{}", t.notice);
            } else {
                println!("{}: {}", t.participant, t.notice);
            }
        }
    });

    // Without a secret in the link, the local participants share one made up
    // here: whichever creates the group prints the invite link, and the
    // others join with it instead of knocking.
    let (secret, generated) = match url.secret.clone() {
        Some(s) => (Some(s), false),
        None => match InviteSecret::generate() {
            Ok(s) => (Some(s), true),
            Err(e) => {
                eprintln!("warning: {e}; joining without an invite secret");
                (None, false)
            }
        },
    };
    let started = Instant::now();
    let mut handles: Vec<Option<ParticipantHandle>> = Vec::with_capacity(args.participants);
    let mut all_stats = Vec::with_capacity(args.participants);
    let mut failed = 0usize;
    for i in 0..args.participants.max(1) {
        let name = if args.participants > 1 {
            format!("{}-{}", args.name, i + 1)
        } else {
            args.name.clone()
        };
        let mut room_url = url.clone();
        if let Some(size) = args.room_size.filter(|&k| k > 0) {
            room_url.room = format!("{}-{}", url.room, i / size + 1);
        }
        let mut config = ParticipantConfig::new(room_url, name);
        config.video = args.video.0;
        config.audio = args.audio;
        config.receive_only = args.receive_only;
        config.count_only = args.count_only;
        config.invite_secret = secret.clone();
        config.secret_generated = generated;
        config.admit_knocks = args.admit_knocks;
        config.no_media_after = Duration::from_secs_f64(args.no_media_after.max(0.5));
        config.seed = i as u64 + 1;
        config.key_update_every = args
            .key_update_every
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.max(0.05)));
        if i == 0 {
            config.chat = args.chat.clone();
        }
        let handle = spawn(config, notice_tx.clone());
        all_stats.push(handle.stats.clone());
        handles.push(Some(handle));
        if args.participants > 1 && args.join_interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.join_interval_ms)).await;
        }
    }
    let snapshot = |arcs: &[Arc<Mutex<ParticipantStats>>]| -> Vec<ParticipantStats> {
        arcs.iter()
            .map(|a| a.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    };

    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<String>();
    if args.interactive {
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if !line.trim().is_empty() && line_tx.send(line).is_err() {
                    break;
                }
            }
        });
    } else {
        drop(line_tx);
    }

    let end = args
        .duration
        .map(|d| started + Duration::from_secs_f64(d.max(0.0)));
    let every = (args.report_every > 0.0).then(|| Duration::from_secs_f64(args.report_every));
    let mut next_report = every.map(|e| Instant::now() + e);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => break,
            Some(line) = line_rx.recv() => {
                if let Some(h) = handles.iter().flatten().next() {
                    h.send_chat(line);
                }
            }
        }
        let now = Instant::now();
        for slot in handles.iter_mut() {
            if slot.as_ref().is_some_and(|h| h.is_finished()) {
                if let Some(h) = slot.take() {
                    let name = h.name.clone();
                    if let Err(e) = h.finish().await {
                        failed += 1;
                        report_error(json, &name, &e.to_string());
                    }
                }
            }
        }
        if handles.iter().all(Option::is_none) {
            break;
        }
        if let (Some(at), Some(e)) = (next_report, every) {
            if now >= at {
                next_report = Some(at + e);
                print_report(json, "report", &snapshot(&all_stats), started.elapsed());
            }
        }
        if end.is_some_and(|end| now >= end) {
            break;
        }
    }

    let elapsed = started.elapsed();
    let summary = snapshot(&all_stats);
    for h in handles.into_iter().flatten() {
        let name = h.name.clone();
        if let Err(e) = h.stop().await {
            failed += 1;
            report_error(json, &name, &e.to_string());
        }
    }
    drop(notice_tx);
    let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
    print_report(json, "summary", &summary, elapsed);
    if failed > 0 {
        eprintln!("{failed} participant(s) ended with an error");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn report_error(json: bool, name: &str, error: &str) {
    if json {
        println!(
            "{}",
            serde_json::json!({"type": "error", "participant": name, "message": error})
        );
    }
    eprintln!("error: {name}: {error}");
}

fn print_report(json: bool, kind: &str, stats: &[ParticipantStats], elapsed: Duration) {
    if json {
        println!("{}", report::json(kind, stats, elapsed));
    } else {
        if kind == "summary" {
            println!("summary:");
        }
        print!("{}", report::text(stats, elapsed));
    }
}
