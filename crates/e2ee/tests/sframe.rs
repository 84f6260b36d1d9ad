//! SFrame: RFC 9605 vectors and frame-level properties.
#![allow(clippy::unwrap_used)]

use conclave_e2ee::sframe::{
    decode_header, derive_key_and_salt, encode_header, kid_for, MAX_HEADER_LEN,
};
use conclave_e2ee::{Codec, Error, SframeContext, SframeKey};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("rfc9605-vectors.json")).unwrap()
}

#[test]
fn rfc9605_header_encoding_vectors_pass() {
    let v = vectors();
    let hs = v["header"].as_array().unwrap();
    assert_eq!(hs.len(), 289);
    for h in hs {
        let kid = h["kid"].as_u64().unwrap();
        let ctr = h["ctr"].as_u64().unwrap();
        let enc = hex(h["encoded"].as_str().unwrap());
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = encode_header(kid, ctr, &mut buf);
        assert_eq!(&buf[..n], &enc[..], "kid {kid} ctr {ctr}");
        assert_eq!(decode_header(&enc).unwrap(), (kid, ctr, enc.len()));
    }
}

#[test]
fn rfc9605_aes_128_gcm_sha256_128_encryption_vector_passes() {
    let v = vectors();
    let t = &v["sframe"][0];
    assert_eq!(t["cipher_suite"].as_u64(), Some(4));
    let kid = t["kid"].as_u64().unwrap();
    let ctr = t["ctr"].as_u64().unwrap();
    let base_key = hex(t["base_key"].as_str().unwrap());
    let (key, salt) = derive_key_and_salt(&base_key, kid).unwrap();
    assert_eq!(key.to_vec(), hex(t["sframe_key"].as_str().unwrap()));
    assert_eq!(salt.to_vec(), hex(t["sframe_salt"].as_str().unwrap()));
    let metadata = hex(t["metadata"].as_str().unwrap());
    let pt = hex(t["pt"].as_str().unwrap());
    let ct = hex(t["ct"].as_str().unwrap());
    let k = SframeKey::derive(&base_key, kid).unwrap();
    let mut out = Vec::new();
    k.encrypt_into(ctr, &metadata, &pt, &mut out).unwrap();
    // Our layout is metadata || sframe ciphertext; the RFC's ct is the latter.
    assert_eq!(&out[..metadata.len()], &metadata[..]);
    assert_eq!(&out[metadata.len()..], &ct[..]);
    let mut back = Vec::new();
    assert_eq!(k.decrypt_raw(&metadata, &ct, &mut back).unwrap(), ctr);
    assert_eq!(back, pt);
    // AAD check: wrong metadata fails.
    assert_eq!(
        k.decrypt_raw(b"other", &ct, &mut back),
        Err(Error::AuthenticationFailed)
    );
}

fn pair() -> (SframeContext, SframeContext) {
    let key = [7u8; 16];
    (
        SframeContext::from_base_key(&key, 5, 1).unwrap(),
        SframeContext::from_base_key(&key, 5, 2).unwrap(),
    )
}

fn vp8_keyframe(len: usize) -> Vec<u8> {
    // frame tag (P=0 keyframe), start code, 640x480
    let mut f = vec![0x50, 0x2d, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
    f.resize(len, 0xab);
    f
}

#[test]
fn a_replayed_frame_is_rejected() {
    let (mut a, mut b) = pair();
    let mut ct = Vec::new();
    let mut pt = Vec::new();
    a.encrypt(Codec::Opus, b"frame-0", &mut ct).unwrap();
    let info = b.decrypt(Codec::Opus, &ct, &mut pt, 0).unwrap();
    assert_eq!((info.sender_leaf, info.epoch, info.counter), (1, 5, 0));
    assert_eq!(b.decrypt(Codec::Opus, &ct, &mut pt, 0), Err(Error::Replay));
    // Out-of-order but fresh frames are fine.
    let mut f1 = Vec::new();
    let mut f2 = Vec::new();
    a.encrypt(Codec::Opus, b"frame-1", &mut f1).unwrap();
    a.encrypt(Codec::Opus, b"frame-2", &mut f2).unwrap();
    b.decrypt(Codec::Opus, &f2, &mut pt, 0).unwrap();
    b.decrypt(Codec::Opus, &f1, &mut pt, 0).unwrap();
    assert_eq!(pt, b"frame-1");
    assert_eq!(b.decrypt(Codec::Opus, &f1, &mut pt, 0), Err(Error::Replay));
}

#[test]
fn a_frame_with_a_tampered_clear_prefix_is_rejected() {
    let (mut a, mut b) = pair();
    let frame = vp8_keyframe(200);
    let mut ct = Vec::new();
    let mut pt = Vec::new();
    a.encrypt(Codec::Vp8, &frame, &mut ct).unwrap();
    // The 10-byte VP8 keyframe header stays clear; the rest does not.
    assert_eq!(&ct[..10], &frame[..10]);
    assert!(!ct[10..].windows(16).any(|w| w == [0xab; 16]));
    for i in 0..10 {
        let mut t = ct.clone();
        t[i] ^= 0x04;
        assert!(b.decrypt(Codec::Vp8, &t, &mut pt, 0).is_err(), "byte {i}");
    }
    // Flipping the keyframe bit changes the prefix length: also rejected.
    let mut t = ct.clone();
    t[0] ^= 0x01;
    assert!(b.decrypt(Codec::Vp8, &t, &mut pt, 0).is_err());
    b.decrypt(Codec::Vp8, &ct, &mut pt, 0).unwrap();
    assert_eq!(pt, frame);
    // Interframe: 1 clear byte.
    let inter = [0x31u8, 0xff, 0xee, 0xdd];
    a.encrypt(Codec::Vp8, &inter, &mut ct).unwrap();
    assert_eq!(ct[0], 0x31);
    assert_ne!(&ct[1..4], &inter[1..4]);
    b.decrypt(Codec::Vp8, &ct, &mut pt, 0).unwrap();
    assert_eq!(pt, inter);
}

#[test]
fn opus_frames_are_fully_encrypted_and_tampering_anywhere_is_rejected() {
    let (mut a, mut b) = pair();
    let mut ct = Vec::new();
    let mut pt = Vec::new();
    a.encrypt(Codec::Opus, &[0x78; 60], &mut ct).unwrap();
    assert_eq!(ct[0], encode_first_byte(kid_for(1, 5).unwrap()));
    for i in 0..ct.len() {
        let mut t = ct.clone();
        t[i] ^= 1;
        assert!(b.decrypt(Codec::Opus, &t, &mut pt, 0).is_err(), "byte {i}");
    }
}

fn encode_first_byte(kid: u64) -> u8 {
    let mut h = [0u8; MAX_HEADER_LEN];
    encode_header(kid, 0, &mut h);
    h[0]
}

#[test]
fn previous_epoch_keys_are_kept_for_a_few_seconds_then_dropped() {
    let (mut a, mut b) = pair();
    let mut old = Vec::new();
    let mut pt = Vec::new();
    a.encrypt(Codec::Opus, b"old", &mut old).unwrap();
    let mut old2 = Vec::new();
    a.encrypt(Codec::Opus, b"old2", &mut old2).unwrap();
    b.set_epoch_key(6, &[8u8; 16], 10_000).unwrap();
    a.set_epoch_key(6, &[8u8; 16], 10_000).unwrap();
    b.decrypt(Codec::Opus, &old, &mut pt, 14_999).unwrap();
    assert_eq!(
        b.decrypt(Codec::Opus, &old2, &mut pt, 15_000),
        Err(Error::UnknownKey)
    );
    let mut new = Vec::new();
    a.encrypt(Codec::Opus, b"new", &mut new).unwrap();
    b.decrypt(Codec::Opus, &new, &mut pt, 15_000).unwrap();
    assert_eq!(pt, b"new");
    // Keys only move forward.
    assert!(b.set_epoch_key(5, &[7u8; 16], 20_000).is_err());
}

#[test]
fn a_new_epoch_with_the_same_low_bits_evicts_the_old_one_at_once() {
    let (mut a, mut b) = pair();
    let mut old = Vec::new();
    let mut pt = Vec::new();
    a.encrypt(Codec::Opus, b"old", &mut old).unwrap();
    b.set_epoch_key(5 + 16, &[9u8; 16], 0).unwrap();
    assert!(b.decrypt(Codec::Opus, &old, &mut pt, 0).is_err());
}

#[test]
fn frames_from_another_group_key_fail_authentication() {
    let mut a = SframeContext::from_base_key(&[1u8; 16], 3, 0).unwrap();
    let mut b = SframeContext::from_base_key(&[2u8; 16], 3, 1).unwrap();
    let mut ct = Vec::new();
    let mut pt = Vec::new();
    a.encrypt(Codec::Opus, b"x", &mut ct).unwrap();
    assert_eq!(
        b.decrypt(Codec::Opus, &ct, &mut pt, 0),
        Err(Error::AuthenticationFailed)
    );
    // A failed frame does not poison the replay window for the real one.
    let mut c = SframeContext::from_base_key(&[1u8; 16], 3, 1).unwrap();
    assert!(c
        .decrypt(Codec::Opus, &ct[..ct.len() - 1], &mut pt, 0)
        .is_err());
    c.decrypt(Codec::Opus, &ct, &mut pt, 0).unwrap();
}

#[test]
fn output_buffers_are_reused_without_reallocation() {
    let (mut a, mut b) = pair();
    let frame = vec![0x42u8; 30_000];
    let mut ct = Vec::with_capacity(31_000);
    let mut pt = Vec::with_capacity(31_000);
    let (cp, pp) = (ct.as_ptr(), pt.as_ptr());
    for _ in 0..100 {
        a.encrypt(Codec::Opus, &frame, &mut ct).unwrap();
        b.decrypt(Codec::Opus, &ct, &mut pt, 0).unwrap();
    }
    assert_eq!((ct.as_ptr(), pt.as_ptr()), (cp, pp));
    assert_eq!(pt, frame);
}
