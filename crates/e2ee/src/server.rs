//! Helpers for the server acting as MLS delivery service and external sender.
//!
//! The server holds only its own signature key (listed in the group's
//! `external_senders` extension) and never any group secret. This module lets
//! it (a) sign external Remove (and Add) proposals, e.g. when a participant's
//! connection drops, (b) inspect the public framing of MLS messages to order
//! commits (first commit per epoch wins) and route Welcomes, and (c) read the
//! identity inside a join request / KeyPackage to compare a participant's
//! signaling announce with what it will show up as in the roster.

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

use crate::error::{mls, Error, Result};
use crate::invite::JoinRequest;
use crate::member::{RosterEntry, CIPHERSUITE};

/// The server's external-sender identity for one or more meetings.
pub struct DeliveryServiceSigner {
    signer: SignatureKeyPair,
    credential: Credential,
}

impl DeliveryServiceSigner {
    /// Generate a new Ed25519 key; `name` goes into its BasicCredential.
    pub fn generate(name: &str) -> Result<Self> {
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(mls)?;
        Ok(DeliveryServiceSigner {
            signer,
            credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
        })
    }

    /// Public signature key.
    pub fn public_key(&self) -> &[u8] {
        self.signer.public()
    }

    /// Serialized `ExternalSender` to pass to [`crate::Member::create_group`].
    pub fn external_sender(&self) -> Result<Vec<u8>> {
        ExternalSender::new(self.signer.to_public_vec().into(), self.credential.clone())
            .tls_serialize_detached()
            .map_err(mls)
    }

    /// An external Remove proposal for `leaf_index` at `epoch` (members
    /// queue it; the next commit applies it).
    pub fn remove_proposal(&self, group_id: &[u8], epoch: u64, leaf_index: u32) -> Result<Vec<u8>> {
        let msg = ExternalProposal::new_remove::<OpenMlsRustCrypto>(
            LeafNodeIndex::new(leaf_index),
            GroupId::from_slice(group_id),
            GroupEpoch::from(epoch),
            &self.signer,
            SenderExtensionIndex::new(0),
        )
        .map_err(mls)?;
        msg.tls_serialize_detached().map_err(mls)
    }

    /// An external Add proposal for a KeyPackage. Members only queue it if
    /// they saw a join request with a valid invite proof for the same
    /// KeyPackage; otherwise they report a knock.
    pub fn add_proposal(&self, group_id: &[u8], epoch: u64, key_package: &[u8]) -> Result<Vec<u8>> {
        let kp = parse_key_package(key_package)?;
        let msg = ExternalProposal::new_add::<OpenMlsRustCrypto>(
            kp,
            GroupId::from_slice(group_id),
            GroupEpoch::from(epoch),
            &self.signer,
            SenderExtensionIndex::new(0),
        )
        .map_err(mls)?;
        msg.tls_serialize_detached().map_err(mls)
    }
}

fn parse_key_package(bytes: &[u8]) -> Result<KeyPackage> {
    let crypto = openmls_rust_crypto::RustCrypto::default();
    KeyPackageIn::tls_deserialize_exact(bytes)
        .map_err(|e| Error::Malformed(format!("key package: {e}")))?
        .validate(&crypto, ProtocolVersion::Mls10)
        .map_err(mls)
}

/// What kind of message the DS is looking at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A join request (KeyPackage + optional invite proof).
    JoinRequest,
    /// MLS Welcome.
    Welcome,
    /// MLS commit.
    Commit,
    /// MLS proposal.
    Proposal,
    /// MLS application message (chat/control).
    Application,
}

/// Public framing of a message, readable without group secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Kind.
    pub kind: MessageKind,
    /// Group id (empty for join requests and Welcomes).
    pub group_id: Vec<u8>,
    /// Epoch the message belongs to (0 for join requests and Welcomes).
    pub epoch: u64,
    /// Sender leaf index for PublicMessages from members (commits/proposals).
    pub sender_leaf: Option<u32>,
}

/// Inspect a message's public framing.
pub fn inspect(bytes: &[u8]) -> Result<MessageInfo> {
    if JoinRequest::is_join_request(bytes) {
        JoinRequest::from_bytes(bytes)?;
        return Ok(MessageInfo {
            kind: MessageKind::JoinRequest,
            group_id: Vec::new(),
            epoch: 0,
            sender_leaf: None,
        });
    }
    let msg = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| Error::Malformed(format!("MLS message: {e}")))?;
    let p: ProtocolMessage = match msg.extract() {
        MlsMessageBodyIn::Welcome(_) => {
            return Ok(MessageInfo {
                kind: MessageKind::Welcome,
                group_id: Vec::new(),
                epoch: 0,
                sender_leaf: None,
            })
        }
        MlsMessageBodyIn::PublicMessage(m) => m.into(),
        MlsMessageBodyIn::PrivateMessage(m) => m.into(),
        _ => return Err(Error::InvalidInput("unsupported MLS message type")),
    };
    let kind = match p.content_type() {
        ContentType::Application => MessageKind::Application,
        ContentType::Proposal => MessageKind::Proposal,
        ContentType::Commit => MessageKind::Commit,
    };
    let sender_leaf = match &p {
        ProtocolMessage::PublicMessage(m) => match m.sender() {
            Sender::Member(l) => Some(l.u32()),
            _ => None,
        },
        ProtocolMessage::PrivateMessage(_) => None,
    };
    Ok(MessageInfo {
        kind,
        group_id: p.group_id().as_slice().to_vec(),
        epoch: p.epoch().as_u64(),
        sender_leaf,
    })
}

/// Identity (display name + signature key) a join request's KeyPackage will
/// have in the roster, and whether it carries an invite proof (the server
/// cannot check the proof).
pub fn join_request_identity(bytes: &[u8]) -> Result<(RosterEntry, bool)> {
    let req = JoinRequest::from_bytes(bytes)?;
    let kp = parse_key_package(&req.key_package)?;
    Ok((RosterEntry::from_key_package(&kp), req.proof.is_some()))
}

/// The KeyPackage inside a join request (for [`DeliveryServiceSigner::add_proposal`]).
pub fn join_request_key_package(bytes: &[u8]) -> Result<Vec<u8>> {
    Ok(JoinRequest::from_bytes(bytes)?.key_package)
}
