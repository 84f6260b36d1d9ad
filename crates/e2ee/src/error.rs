//! Error type shared by the crate: every bad input maps to a variant here
//! instead of a panic, so callers (server, agent, browser Worker) can drop a
//! message or frame and carry on.

/// Errors returned by the E2EE core.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Input bytes or arguments are invalid.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// A message could not be decoded.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// An SFrame ciphertext could not be parsed.
    #[error("malformed SFrame frame")]
    MalformedFrame,
    /// A frame is shorter than its codec's clear prefix.
    #[error("frame too short for codec")]
    FrameTooShort,
    /// No key for this frame's KID (unknown, expired or never received epoch).
    #[error("no key for this frame (unknown or expired epoch)")]
    UnknownKey,
    /// No sending key installed yet.
    #[error("no sending key")]
    NoKey,
    /// AEAD authentication failed (tampered frame or wrong key).
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The frame's counter was already seen or is too old.
    #[error("replayed or too old frame")]
    Replay,
    /// Sending counter space exhausted (never happens in practice).
    #[error("SFrame counter exhausted")]
    CounterExhausted,
    /// Internal crypto failure.
    #[error("crypto error")]
    Crypto,
    /// Operation needs group membership.
    #[error("not in a group")]
    NotInGroup,
    /// Already in a group.
    #[error("already in a group")]
    AlreadyInGroup,
    /// The message is for a different epoch than ours: a newer one means we
    /// missed a commit and should rejoin.
    #[error("epoch mismatch: we are at {local}, message is for {message}")]
    EpochMismatch {
        /// Our epoch.
        local: u64,
        /// The message's epoch.
        message: u64,
    },
    /// The message is for a different group.
    #[error("message for another group")]
    WrongGroup,
    /// A commit adds someone without a valid invite proof or admission; it
    /// was refused and not applied.
    #[error("commit refused: {0}")]
    CommitRefused(String),
    /// A commit of ours is waiting for the delivery service's confirmation.
    #[error("a commit is already pending")]
    CommitPending,
    /// Unknown knock id.
    #[error("unknown knock id")]
    UnknownKnock,
    /// Error reported by the MLS library.
    #[error("MLS error: {0}")]
    Mls(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn mls<E: std::fmt::Display>(e: E) -> Error {
    Error::Mls(e.to_string())
}
