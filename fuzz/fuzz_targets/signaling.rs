//! Signaling JSON in both directions: every client message the server
//! parses (`parse_client_message`, with its validation), and every server
//! message a client (the agent) parses.
#![no_main]

use conclave_protocol::{parse_client_message, ServerMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = parse_client_message(text) {
        // What parsed must serialize back (the server logs and relays it).
        let _ = serde_json::to_string(&message);
    }
    let _ = serde_json::from_str::<ServerMessage>(text);
});
