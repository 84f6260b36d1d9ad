//! The MLS delivery service's inputs from clients: any MLS message it
//! inspects before relaying (commits, proposals, application messages,
//! Welcomes), join requests, and a creator's GroupInfo.
#![no_main]

use conclave_e2ee::server::{
    inspect, join_request_identity, join_request_key_package, RoomDelivery,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = inspect(data);
    let _ = join_request_identity(data);
    let _ = join_request_key_package(data);
    let _ = RoomDelivery::from_group_info(data, b"room", b"sender");
});
