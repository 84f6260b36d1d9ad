//! `conclave-agent`: a native Conclave participant, for load and robustness
//! tests. It joins a room exactly as the browser does (same signaling, a
//! str0m peer answering the server's offer), publishes synthetic
//! Opus/VP8-shaped media on its three publish m-lines, and counts what it
//! receives per remote participant.
//!
//! Modules follow the media path:
//! - `media` builds whole encoded frames (audio and VP8-shaped video);
//! - `packetize` turns frames into RTP payloads and back; each frame is
//!   SFrame-encrypted between the two on the way out, and decrypted after
//!   reassembly on the way in;
//! - `group` is the end-to-end encryption: the participant's MLS member
//!   (`conclave-e2ee`), the delivery-service protocol around it, encrypted
//!   chat and the SFrame keys;
//! - `signaling` parses room links and server messages defensively;
//! - `slots` is the m-line map (the SFU's receive slots move between
//!   participants) and whose frames a slot may carry;
//! - `participant` runs one participant as a tokio task;
//! - `stats` counts what arrives;
//! - `report` renders statistics for humans and as JSON.
//!
//! Everything the agent sends is end-to-end encrypted as the browser's is.

pub mod group;
pub mod media;
pub mod packetize;
pub mod participant;
pub mod report;
pub mod signaling;
pub mod slots;
pub mod stats;

pub use media::VideoClass;
pub use participant::{spawn, AgentError, Notice, ParticipantConfig, ParticipantHandle, Tagged};
pub use signaling::{InviteSecret, RoomUrl};
pub use stats::{ParticipantStats, RemoteStats, TrackStats};

/// Installs str0m's crypto provider for the process; idempotent.
pub fn init_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}
