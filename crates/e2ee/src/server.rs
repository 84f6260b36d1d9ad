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
use crate::invite::{AddAuthorizations, JoinRequest};
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

/// What an accepted commit changed, as the delivery service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitApplied {
    /// The epoch the commit started.
    pub epoch: u64,
    /// Leaf index of the committer.
    pub committer: u32,
    /// Members the commit added (with their new leaf indices): route the
    /// Welcome to whoever sent the matching join request.
    pub added: Vec<RosterEntry>,
    /// Members the commit removed.
    pub removed: Vec<RosterEntry>,
}

/// The delivery service's view of one meeting's MLS group: the public
/// ratchet tree and group context (an openmls `PublicGroup`), no secret.
///
/// It follows every commit it relays, so it can order them (first valid
/// commit per epoch wins), refuse malformed or invalid ones before they
/// reach anybody, route Welcomes, and know which leaf belongs to whom (to
/// propose removals of members whose connection is gone).
pub struct RoomDelivery {
    provider: OpenMlsRustCrypto,
    group: PublicGroup,
}

impl RoomDelivery {
    /// Start following a group from the creator's GroupInfo (with the ratchet
    /// tree extension, see [`crate::Member::group_info`]). Refuses a group
    /// whose id is not `room_id`, with another ciphersuite, or that does not
    /// list `external_sender` (from [`DeliveryServiceSigner::external_sender`])
    /// as its external sender (the server could then not remove members who
    /// vanish).
    pub fn from_group_info(
        group_info: &[u8],
        room_id: &[u8],
        external_sender: &[u8],
    ) -> Result<Self> {
        let msg = MlsMessageIn::tls_deserialize_exact(group_info)
            .map_err(|e| Error::Malformed(format!("group info: {e}")))?;
        let MlsMessageBodyIn::GroupInfo(gi) = msg.extract() else {
            return Err(Error::InvalidInput("not a GroupInfo"));
        };
        if gi.group_id().as_slice() != room_id {
            return Err(Error::WrongGroup);
        }
        if gi.ciphersuite() != CIPHERSUITE {
            return Err(Error::InvalidInput("group ciphersuite"));
        }
        let tree = gi
            .extensions()
            .ratchet_tree()
            .ok_or(Error::InvalidInput("GroupInfo without ratchet tree"))?
            .ratchet_tree()
            .clone();
        let provider = OpenMlsRustCrypto::default();
        let (group, _) = PublicGroup::from_external(
            provider.crypto(),
            provider.storage(),
            tree,
            gi,
            ProposalStore::new(),
        )
        .map_err(mls)?;
        let ours = group
            .group_context()
            .extensions()
            .external_senders()
            .is_some_and(|s| {
                s.iter().any(|e| {
                    e.tls_serialize_detached()
                        .is_ok_and(|b| b.as_slice() == external_sender)
                })
            });
        if !ours {
            return Err(Error::InvalidInput(
                "the group does not list this server as external sender",
            ));
        }
        Ok(RoomDelivery { provider, group })
    }

    /// Current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.group_context().epoch().as_u64()
    }

    /// Group id (the room id).
    pub fn group_id(&self) -> &[u8] {
        self.group.group_id().as_slice()
    }

    /// Current roster from the public tree.
    pub fn roster(&self) -> Vec<RosterEntry> {
        self.group.members().map(|m| roster_entry(&m)).collect()
    }

    /// Leaf index of the member with this signature key, if any.
    pub fn leaf_of(&self, signature_key: &[u8]) -> Option<u32> {
        self.group
            .members()
            .find(|m| m.signature_key == signature_key)
            .map(|m| m.index.u32())
    }

    /// Check a commit against the current epoch and tree. On success it is
    /// applied here and must be relayed to every member; on error nothing
    /// changed: [`Error::EpochMismatch`] means another commit won the epoch.
    pub fn handle_commit(&mut self, bytes: &[u8]) -> Result<CommitApplied> {
        let message = self.public_message(bytes)?;
        if message.content_type() != ContentType::Commit {
            return Err(Error::InvalidInput("not a commit"));
        }
        let committer = match message.sender() {
            Sender::Member(l) => l.u32(),
            _ => return Err(Error::CommitRefused("commit from a non-member".into())),
        };
        let processed = self
            .group
            .process_message(self.provider.crypto(), message)
            .map_err(mls)?;
        let aad = processed.aad().to_vec();
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(Error::InvalidInput("not a commit"));
        };
        // Members refuse a commit that changes the group context's
        // extensions (the invite commitment is fixed at creation), so it
        // must not reach them either.
        if staged.group_context().extensions() != self.group.group_context().extensions() {
            return Err(Error::CommitRefused(
                "commit changes the group context extensions".into(),
            ));
        }
        // Every Add must carry an authorization of the right form (an invite
        // proof or an admission mark). The server cannot check a proof (it
        // has no secret), but a commit without one would be refused by every
        // honest member and freeze the room, so it never reaches them.
        let auths = AddAuthorizations::from_bytes(&aad)?;
        for add in staged.add_proposals() {
            let kp_ref = add
                .add_proposal()
                .key_package()
                .hash_ref(self.provider.crypto())
                .map_err(mls)?;
            if auths.get(kp_ref.as_slice()).is_none() {
                return Err(Error::CommitRefused(
                    "Add without invite proof or admission".into(),
                ));
            }
        }
        let before = self.roster();
        self.group
            .merge_commit(self.provider.storage(), *staged)
            .map_err(mls)?;
        let after = self.roster();
        Ok(CommitApplied {
            epoch: self.epoch(),
            committer,
            added: after
                .iter()
                .filter(|r| !before.contains(r))
                .cloned()
                .collect(),
            removed: before
                .iter()
                .filter(|r| !after.contains(r))
                .cloned()
                .collect(),
        })
    }

    /// Check a proposal (a member's own Remove, or one this server signed)
    /// and keep it, so a later commit that refers to it can be checked.
    pub fn handle_proposal(&mut self, bytes: &[u8]) -> Result<()> {
        let message = self.public_message(bytes)?;
        if message.content_type() != ContentType::Proposal {
            return Err(Error::InvalidInput("not a proposal"));
        }
        let processed = self
            .group
            .process_message(self.provider.crypto(), message)
            .map_err(mls)?;
        let ProcessedMessageContent::ProposalMessage(q) = processed.into_content() else {
            return Err(Error::InvalidInput("not a proposal"));
        };
        if !matches!(q.proposal(), Proposal::Remove(_)) {
            return Err(Error::InvalidInput("only Remove proposals are relayed"));
        }
        self.group
            .add_proposal(self.provider.storage(), *q)
            .map_err(mls)
    }

    /// Check that an application message (encrypted chat) belongs to this
    /// group's current or a recent epoch. Its content stays unreadable.
    pub fn check_application(&self, bytes: &[u8]) -> Result<()> {
        let info = inspect(bytes)?;
        if info.kind != MessageKind::Application {
            return Err(Error::InvalidInput("not an application message"));
        }
        if info.group_id != self.group_id() {
            return Err(Error::WrongGroup);
        }
        let local = self.epoch();
        if info.epoch > local || info.epoch + 3 < local {
            return Err(Error::EpochMismatch {
                local,
                message: info.epoch,
            });
        }
        Ok(())
    }

    fn public_message(&self, bytes: &[u8]) -> Result<PublicMessageIn> {
        let msg = MlsMessageIn::tls_deserialize_exact(bytes)
            .map_err(|e| Error::Malformed(format!("MLS message: {e}")))?;
        let MlsMessageBodyIn::PublicMessage(m) = msg.extract() else {
            return Err(Error::InvalidInput(
                "handshake messages must be PublicMessages",
            ));
        };
        if m.group_id().as_slice() != self.group_id() {
            return Err(Error::WrongGroup);
        }
        let local = self.epoch();
        let message = m.epoch().as_u64();
        if message != local {
            return Err(Error::EpochMismatch { local, message });
        }
        Ok(m)
    }
}

fn roster_entry(m: &openmls::group::Member) -> RosterEntry {
    RosterEntry {
        leaf_index: m.index.u32(),
        display_name: String::from_utf8_lossy(m.credential.serialized_content()).into_owned(),
        signature_key: m.signature_key.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Member;

    /// A member's commit that swaps the group's invite commitment for one
    /// of its own key (knock-admitted members would then adopt that key)
    /// is refused by the delivery service and by every member.
    #[test]
    fn nobody_accepts_a_commit_that_changes_the_invite_commitment() {
        let ds = DeliveryServiceSigner::generate("ds").unwrap();
        let sender = ds.external_sender().unwrap();
        let secret = [5; 32];
        let mut rogue = Member::new("Rogue", b"room", Some(&secret)).unwrap();
        rogue
            .create_group(std::slice::from_ref(&sender), 0)
            .unwrap();
        let mut delivery =
            RoomDelivery::from_group_info(&rogue.group_info().unwrap(), b"room", &sender).unwrap();
        let mut friend = Member::new("Friend", b"room", Some(&secret)).unwrap();
        rogue
            .handle_join_request(&friend.join_request().unwrap())
            .unwrap();
        let out = rogue.commit_pending().unwrap().unwrap();
        delivery.handle_commit(&out.commit).unwrap();
        rogue.confirm_commit(0).unwrap();
        friend.process_incoming(&out.welcome.unwrap(), 0).unwrap();
        assert!(friend.invite_key_matches_group());

        let own = crate::invite::InviteKey::from_bytes([6; 32]);
        let commit = rogue
            .commit_invite_commitment(&own.commitment(b"room").unwrap())
            .unwrap();
        let refused = Err(Error::CommitRefused(
            "commit changes the group context extensions".into(),
        ));
        assert_eq!(delivery.handle_commit(&commit).map(|_| ()), refused);
        assert_eq!(delivery.epoch(), 1, "nothing applied");
        assert_eq!(friend.process_incoming(&commit, 0).map(|_| ()), refused);
        assert_eq!(friend.epoch().unwrap(), 1);
        assert!(friend.invite_key_matches_group());
    }

    /// Attack 4: a member's commit that adds someone without an invite proof
    /// or admission mark never reaches the others (it would freeze the room).
    #[test]
    fn the_delivery_service_refuses_adds_without_authorization() {
        let ds = DeliveryServiceSigner::generate("ds").unwrap();
        let sender = ds.external_sender().unwrap();
        let mut rogue = Member::new("Rogue", b"room", Some(&[5; 32])).unwrap();
        rogue
            .create_group(std::slice::from_ref(&sender), 0)
            .unwrap();
        let mut delivery =
            RoomDelivery::from_group_info(&rogue.group_info().unwrap(), b"room", &sender).unwrap();
        let mut friend = Member::new("Friend", b"room", None).unwrap();
        let request = friend.join_request().unwrap();
        let commit = rogue.commit_add_without_authorization(&request).unwrap();
        assert_eq!(
            delivery.handle_commit(&commit).map(|_| ()),
            Err(Error::CommitRefused(
                "Add without invite proof or admission".into()
            ))
        );
        assert_eq!(delivery.epoch(), 0, "nothing applied");
        // The same Add with an admission mark goes through.
        rogue.discard_pending_commit().unwrap();
        let crate::Event::Knock { knock_id, .. } = rogue.handle_join_request(&request).unwrap()
        else {
            panic!("a knock")
        };
        rogue.admit(knock_id).unwrap();
        let out = rogue.commit_pending().unwrap().unwrap();
        assert!(delivery.handle_commit(&out.commit).is_ok());
        assert_eq!(delivery.epoch(), 1);
    }
}
