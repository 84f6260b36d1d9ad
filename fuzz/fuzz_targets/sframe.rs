//! SFrame frames as a receiver gets them from the network (RFC 9605): the
//! codec's clear prefix, the header, the key ID split into leaf and epoch,
//! and decryption with a context that holds real keys for two epochs, so
//! well-formed headers reach the AEAD and the replay window. With the first
//! byte's top bit set, the rest is a frame a real sender encrypts first: it
//! must decrypt to itself once, and be refused as a replay the second time.
#![no_main]

use conclave_e2ee::sframe::{decode_header, split_kid};
use conclave_e2ee::{Codec, SframeContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let _ = decode_header(frame).map(|(kid, _, _)| split_kid(kid));
    let Ok(codec) = Codec::from_u8(selector % 3) else {
        return;
    };
    let _ = codec.clear_prefix_len(frame);
    // Leaf 1 receives in epochs 7 and 8; leaf 0 sends in epoch 8.
    let (Ok(mut receiver), Ok(mut sender)) = (
        SframeContext::from_base_key(&[7; 16], 7, 1),
        SframeContext::from_base_key(&[8; 16], 8, 0),
    ) else {
        return;
    };
    if receiver.set_epoch_key(8, &[8; 16], 0).is_err() {
        return;
    }
    let mut out = Vec::new();
    if selector & 0x80 == 0 {
        let _ = receiver.decrypt(codec, frame, &mut out, 1);
        let _ = receiver.decrypt(codec, frame, &mut out, 2);
        return;
    }
    let mut sealed = Vec::new();
    if sender.encrypt(codec, frame, &mut sealed).is_err() {
        return;
    }
    let info = receiver
        .decrypt(codec, &sealed, &mut out, 1)
        .expect("a frame a member sealed opens");
    assert_eq!((info.sender_leaf, info.epoch), (0, 8));
    assert_eq!(out, frame, "it opens to what was sealed");
    assert!(
        receiver.decrypt(codec, &sealed, &mut out, 2).is_err(),
        "a replayed frame is refused"
    );
});
