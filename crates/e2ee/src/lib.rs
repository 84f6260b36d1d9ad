//! Conclave's end-to-end-encryption core.
//!
//! A sans-IO crate (no sockets, no clock of its own: time is an argument)
//! shared by the server (as MLS delivery service / external sender), native
//! agents and the browser Worker (via `conclave-e2ee-wasm`):
//!
//! * [`member`]: one participant's MLS (RFC 9420, ciphersuite 0x0001) group
//!   state — create/join/commit/leave, roster, security code, chat/control
//!   messages as MLS application messages, and the SFrame keys it feeds.
//! * [`invite`]: the invite-secret proof that gates who members add.
//! * [`sframe`]: RFC 9605 frame protection, usable standalone.
//! * [`session`]: the group protocol around a member (create/join, commit
//!   ranking, group proofs, knocks, chat queueing, visible rejoins) as one
//!   sans-IO state machine for every client.
//! * [`server`]: helpers for the delivery service, which holds no group
//!   secret (external Remove/Add proposals, message inspection).
//! * [`security_code`]: the human-comparable code from the epoch authenticator.
//!
//! See `docs/security.md` for the design and threat model.
#![deny(missing_docs)]

pub mod error;
pub mod invite;
pub mod member;
pub mod security_code;
pub mod server;
pub mod session;
pub mod sframe;

pub use error::{Error, Result};
pub use member::{valid_member_name, CommitOutput, Event, Member, RosterEntry};
pub use session::{Outgoing, Session, SessionConfig, SessionEvent, SessionState};
pub use sframe::{Codec, FrameInfo, SframeContext, SframeKey};
