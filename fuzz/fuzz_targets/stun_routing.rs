//! What the media port reads before any check: the STUN USERNAME parse
//! that routes a datagram to its participant, and the participant id in a
//! ufrag that routes it to its media thread.
#![no_main]

use conclave_sfu::{participant_of_ufrag, stun_local_ufrag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(ufrag) = stun_local_ufrag(data) {
        let _ = participant_of_ufrag(ufrag);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = participant_of_ufrag(text);
    }
});
