//! One participant's MLS group state for one meeting.
//!
//! This module exists to hide `openmls` behind a small sans-IO API the server
//! relay, native agents and the browser Worker can all drive: bytes in
//! ([`Member::process_incoming`]), bytes and [`Event`]s out. It enforces the
//! membership policy (invite proof or explicit admission for every Add, see
//! [`crate::invite`]), keeps the SFrame keys in step with MLS epochs, and
//! carries chat/control messages as MLS application messages.
//!
//! Delivery-service contract assumed here (DAVE-like): the DS forwards every
//! handshake message to all members *including* the committer, in one total
//! order, keeping only the first commit per epoch. A member's own commit is
//! applied when it comes back from the DS (or when [`Member::confirm_commit`]
//! is called); if another commit for the same epoch arrives first, ours is
//! discarded and its Adds are retried with the next commit.

use std::collections::{HashMap, VecDeque};

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

use crate::error::{mls, Error, Result};
use crate::invite::{
    AddAuthorization, AddAuthorizations, InviteKey, JoinRequest, INVITE_COMMITMENT_EXTENSION,
};
use crate::security_code::security_code;
use crate::sframe::{Codec, FrameInfo, SframeContext, KEY_LEN, MLS_EXPORTER_LABEL};

/// The only MLS ciphersuite used: 0x0001 MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// How many past epochs of MLS application secrets we keep (late chat).
const MAX_PAST_EPOCHS: usize = 3;

/// How long a KeyPackage (so a join request) is valid: a join request the
/// server keeps and replays later is refused once it expires. Joiners make a
/// fresh one for every attempt.
pub const KEY_PACKAGE_LIFETIME_SECS: u64 = 60 * 60;
/// openmls starts a lifetime an hour early for clock skew; anything longer
/// than that plus ours was not made by a Conclave client.
const MAX_KEY_PACKAGE_RANGE_SECS: u64 = KEY_PACKAGE_LIFETIME_SECS + 2 * 60 * 60;
/// How many used KeyPackages a member remembers (replays within a meeting).
const MAX_USED_KEY_PACKAGES: usize = 4096;

const APP_CHAT: u8 = 1;
const APP_CONTROL: u8 = 2;

/// Longest display name in a credential, in characters (the signaling limit).
pub const MAX_NAME_CHARS: usize = 64;

/// Whether a credential's display name may be shown: 1 to
/// [`MAX_NAME_CHARS`] characters, not only spaces, and no control or
/// invisible formatting characters (bidi overrides, zero-width), which
/// could make one name look like another.
pub fn valid_member_name(name: &str) -> bool {
    let invisible = |c: char| matches!(c as u32, 0x061C | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF);
    !name.trim().is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(|c| c.is_control() || invisible(c))
}

/// One roster line: MLS leaf index → identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RosterEntry {
    /// MLS leaf index (also the SFrame sender id).
    pub leaf_index: u32,
    /// Display name from the member's BasicCredential.
    pub display_name: String,
    /// Ed25519 per-session signature public key (32 bytes).
    pub signature_key: Vec<u8>,
}

impl RosterEntry {
    fn from_member(m: &openmls::group::Member) -> Self {
        RosterEntry {
            leaf_index: m.index.u32(),
            display_name: String::from_utf8_lossy(m.credential.serialized_content()).into_owned(),
            signature_key: m.signature_key.clone(),
        }
    }

    /// Identity of a KeyPackage's leaf (leaf index unknown yet: `u32::MAX`).
    pub fn from_key_package(kp: &KeyPackage) -> Self {
        let leaf = kp.leaf_node();
        RosterEntry {
            leaf_index: u32::MAX,
            display_name: String::from_utf8_lossy(leaf.credential().serialized_content())
                .into_owned(),
            signature_key: leaf.signature_key().as_slice().to_vec(),
        }
    }
}

/// Something the application should know about after processing input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// We joined (created or were welcomed into) the group.
    Joined {
        /// Current epoch.
        epoch: u64,
        /// Roster from the cryptographic group.
        roster: Vec<RosterEntry>,
        /// Security code for this epoch.
        security_code: String,
        /// SFrame base key of this epoch (push it to the media Worker).
        sframe_base_key: Vec<u8>,
    },
    /// A commit was applied; new epoch.
    EpochChanged {
        /// New epoch.
        epoch: u64,
        /// New roster.
        roster: Vec<RosterEntry>,
        /// New security code.
        security_code: String,
        /// New SFrame base key.
        sframe_base_key: Vec<u8>,
        /// Members added by this commit.
        added: Vec<RosterEntry>,
        /// Members removed by this commit.
        removed: Vec<RosterEntry>,
        /// Of `added`, those admitted by the committer without invite proof.
        admitted_without_secret: Vec<RosterEntry>,
        /// Leaf index of the committer.
        committer: u32,
    },
    /// We were removed from the group; all keys are dropped.
    Removed {
        /// Leaf index (in the epoch we left) of the member who committed it.
        committer: u32,
    },
    /// A chat message.
    Chat {
        /// Sender, as in the message's epoch (its `signature_key` is empty
        /// if that epoch's roster is no longer known).
        sender: RosterEntry,
        /// Text.
        text: String,
        /// When the sender sent it (ms since the Unix epoch, the sender's
        /// clock; 0 if it gave none). Inside the encryption: the server
        /// cannot change it.
        sent_at_ms: u64,
        /// The sender's own message counter (per member session), also
        /// inside the encryption.
        counter: u32,
    },
    /// A control message (opaque to this crate).
    Control {
        /// Sender.
        sender: RosterEntry,
        /// Payload.
        payload: Vec<u8>,
    },
    /// A joiner proved the invite secret; it will be added by the next commit.
    JoinVerified {
        /// The joiner's identity.
        joiner: RosterEntry,
    },
    /// Someone without (valid) invite proof asks to join: a human decides
    /// with [`Member::admit`] or [`Member::reject`].
    Knock {
        /// Id to pass to `admit`/`reject`.
        knock_id: u64,
        /// The joiner's claimed identity.
        joiner: RosterEntry,
    },
    /// A Remove proposal was queued (from the server or a leaving member).
    RemoveProposed {
        /// Leaf to be removed.
        leaf_index: u32,
        /// True if proposed by the server (external sender).
        by_server: bool,
    },
    /// Our pending commit lost the race against another commit and was dropped.
    CommitDiscarded,
}

/// A commit to send to the delivery service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutput {
    /// The MLS commit message (PublicMessage), for all members.
    pub commit: Vec<u8>,
    /// The Welcome for new members, if the commit adds anyone.
    pub welcome: Option<Vec<u8>>,
}

#[derive(Clone)]
struct PendingAdd {
    kp: KeyPackage,
    kp_ref: Vec<u8>,
    auth: AddAuthorization,
}

enum KnockSource {
    ByValue,
    Proposal(Box<QueuedProposal>),
}

struct Knock {
    kp: KeyPackage,
    kp_ref: Vec<u8>,
    source: KnockSource,
}

struct PendingCommit {
    bytes: Vec<u8>,
    adds: Vec<PendingAdd>,
    removals: Vec<LeafNodeIndex>,
}

/// One participant of one meeting.
pub struct Member {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    room_id: Vec<u8>,
    invite_key: Option<InviteKey>,
    group: Option<MlsGroup>,
    pending_commit: Option<PendingCommit>,
    queued_adds: Vec<PendingAdd>,
    queued_removals: Vec<LeafNodeIndex>,
    /// Whether the next commit must refresh our own leaf (post-compromise security).
    want_self_update: bool,
    /// Authorizations of Add proposals waiting in the openmls proposal store.
    store_auth: HashMap<Vec<u8>, AddAuthorization>,
    /// Verified proofs from join requests, by KeyPackageRef (for external Adds).
    proofs_seen: HashMap<Vec<u8>, [u8; 32]>,
    /// KeyPackages already added to the group (by ref): each is used once.
    used_key_packages: std::collections::HashSet<Vec<u8>>,
    knocks: HashMap<u64, Knock>,
    next_knock_id: u64,
    chat_counter: u32,
    /// Rosters of the last few epochs (newest last, at most
    /// `MAX_PAST_EPOCHS`), whose application messages openmls still opens:
    /// a late message names its sender as it was in its own epoch.
    past_rosters: VecDeque<(u64, Vec<RosterEntry>)>,
    sframe: SframeContext,
}

fn ser<T: tls_codec::Serialize>(v: &T) -> Result<Vec<u8>> {
    v.tls_serialize_detached().map_err(mls)
}

/// Our leaves' capabilities: the defaults plus the invite commitment
/// extension, which MLS requires every member to support because it sits
/// in the group context.
fn capabilities() -> Capabilities {
    Capabilities::builder()
        .extensions(vec![ExtensionType::Unknown(INVITE_COMMITMENT_EXTENSION)])
        .build()
}

impl Member {
    /// A new participant with a fresh per-session Ed25519 signature key.
    ///
    /// `room_id` is the MLS group id; `invite_secret` (≥ 16 bytes) is known
    /// if the user came through an invite link.
    pub fn new(display_name: &str, room_id: &[u8], invite_secret: Option<&[u8]>) -> Result<Self> {
        if !valid_member_name(display_name) {
            return Err(Error::InvalidInput(
                "display name must be 1 to 64 printable characters",
            ));
        }
        if room_id.is_empty() || room_id.len() > 255 {
            return Err(Error::InvalidInput("room id must be 1..=255 bytes"));
        }
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(mls)?;
        signer.store(provider.storage()).map_err(mls)?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(display_name.as_bytes().to_vec()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        let invite_key = invite_secret
            .map(|s| InviteKey::derive(s, room_id))
            .transpose()?;
        Ok(Member {
            provider,
            signer,
            credential,
            room_id: room_id.to_vec(),
            invite_key,
            group: None,
            pending_commit: None,
            queued_adds: Vec::new(),
            queued_removals: Vec::new(),
            want_self_update: false,
            store_auth: HashMap::new(),
            proofs_seen: HashMap::new(),
            used_key_packages: std::collections::HashSet::new(),
            knocks: HashMap::new(),
            next_knock_id: 1,
            chat_counter: 0,
            past_rosters: VecDeque::new(),
            sframe: SframeContext::new(None),
        })
    }

    /// Our per-session signature public key.
    pub fn signature_key(&self) -> &[u8] {
        self.signer.public()
    }

    /// Whether we currently are in the group.
    pub fn in_group(&self) -> bool {
        self.group.is_some()
    }

    /// Whether we hold the invite secret.
    pub fn has_invite_secret(&self) -> bool {
        self.invite_key.is_some()
    }

    /// Make up a new invite secret (32 random bytes) for a group we are
    /// about to create without one; returns it for the invite link.
    pub fn generate_invite_secret(&mut self) -> Result<Vec<u8>> {
        use openmls_traits::random::OpenMlsRand as _;
        let secret = self.provider.rand().random_vec(32).map_err(mls)?;
        self.invite_key = Some(InviteKey::derive(&secret, &self.room_id)?);
        Ok(secret)
    }

    /// The derived invite key, to share with members admitted by knock.
    pub fn invite_key(&self) -> Option<&InviteKey> {
        self.invite_key.as_ref()
    }

    /// Adopt an invite key shared inside the group (we were admitted by
    /// knock). Only a key that matches the group's invite commitment
    /// ([`Member::invite_key_matches_group`]) is taken, and never in place
    /// of one we already hold: any member can share a key, and a wrong one
    /// would make us refuse genuine joiners and accept the sharer's.
    pub fn adopt_invite_key(&mut self, key: InviteKey) -> bool {
        if self.invite_key.is_some() || !self.group_commits_to(&key) {
            return false;
        }
        self.invite_key = Some(key);
        true
    }

    /// Whether the group's context carries the commitment to the invite key
    /// we hold ([`InviteKey::commitment`]). The creator puts it there and
    /// no commit may change it (see [`Member::process_incoming`]), and every
    /// joiner that holds the secret checks it before it trusts the group,
    /// so it is the key all secret holders in this group agreed on.
    pub fn invite_key_matches_group(&self) -> bool {
        self.invite_key
            .as_ref()
            .is_some_and(|k| self.group_commits_to(k))
    }

    fn group_commits_to(&self, key: &InviteKey) -> bool {
        self.group.as_ref().is_some_and(|g| {
            g.extensions()
                .unknown(INVITE_COMMITMENT_EXTENSION)
                .is_some_and(|c| key.verify_commitment(g.group_id().as_slice(), &c.0))
        })
    }

    /// This epoch's group proof ([`InviteKey::group_proof`]), if we hold the key.
    pub fn group_proof(&self) -> Result<Option<[u8; crate::invite::PROOF_LEN]>> {
        let Some(k) = &self.invite_key else {
            return Ok(None);
        };
        let g = self.group()?;
        k.group_proof(
            g.group_id().as_slice(),
            g.epoch().as_u64(),
            g.epoch_authenticator().as_slice(),
        )
        .map(Some)
    }

    /// A fresh KeyPackage (serialized) — keep this Member alive to use its keys.
    pub fn key_package(&mut self) -> Result<Vec<u8>> {
        let bundle = KeyPackage::builder()
            .key_package_lifetime(Lifetime::new(KEY_PACKAGE_LIFETIME_SECS))
            .leaf_node_capabilities(capabilities())
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .map_err(mls)?;
        ser(bundle.key_package())
    }

    /// A join request for the delivery service: a fresh KeyPackage plus the
    /// invite proof if we hold the secret (otherwise it is a knock).
    pub fn join_request(&mut self) -> Result<Vec<u8>> {
        let key_package = self.key_package()?;
        let proof = match &self.invite_key {
            Some(k) => Some(k.prove(&key_package)?),
            None => None,
        };
        Ok(JoinRequest { key_package, proof }.to_bytes())
    }

    /// Drop the group state (after missing a commit) and produce a new join
    /// request; the members then add the new KeyPackage and remove our old leaf.
    pub fn rejoin_request(&mut self) -> Result<Vec<u8>> {
        if let Some(mut g) = self.group.take() {
            // Best effort: state is in memory only.
            let _ = g.delete(self.provider.storage());
        }
        self.reset_local_state();
        // A fresh signature key: the old leaf (same key) may still be in the
        // tree until a commit removes it, and the delivery service tells the
        // new leaf from the stale one by key.
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(mls)?;
        signer.store(self.provider.storage()).map_err(mls)?;
        self.credential.signature_key = signer.to_public_vec().into();
        self.signer = signer;
        self.join_request()
    }

    fn reset_local_state(&mut self) {
        self.pending_commit = None;
        self.queued_adds.clear();
        self.queued_removals.clear();
        self.want_self_update = false;
        self.store_auth.clear();
        self.knocks.clear();
        self.past_rosters.clear();
        self.sframe.clear();
        self.sframe.set_own_leaf(None);
    }

    /// Keeps the roster of an epoch we are leaving (see `past_rosters`).
    fn remember_roster(&mut self, epoch: u64, roster: Vec<RosterEntry>) {
        self.past_rosters.push_back((epoch, roster));
        while self.past_rosters.len() > MAX_PAST_EPOCHS {
            self.past_rosters.pop_front();
        }
    }

    /// The roster of `epoch`: the current one, or one we kept; empty if
    /// neither.
    fn roster_of_epoch(&self, epoch: u64) -> Result<Vec<RosterEntry>> {
        if epoch == self.epoch()? {
            return self.roster();
        }
        Ok(self
            .past_rosters
            .iter()
            .find(|(e, _)| *e == epoch)
            .map(|(_, r)| r.clone())
            .unwrap_or_default())
    }

    /// Create the meeting's group (first participant).
    ///
    /// `external_senders` are serialized `ExternalSender`s (see
    /// [`crate::server::DeliveryServiceSigner::external_sender`]) allowed to
    /// send Add/Remove proposals — normally exactly the server's.
    pub fn create_group(
        &mut self,
        external_senders: &[Vec<u8>],
        now_ms: u64,
    ) -> Result<Vec<Event>> {
        if self.group.is_some() {
            return Err(Error::AlreadyInGroup);
        }
        let mut senders = Vec::with_capacity(external_senders.len());
        for s in external_senders {
            senders.push(
                ExternalSender::tls_deserialize_exact(s.as_slice())
                    .map_err(|e| Error::Malformed(format!("external sender: {e}")))?,
            );
        }
        let mut exts = Vec::new();
        if !senders.is_empty() {
            exts.push(Extension::ExternalSenders(senders));
        }
        if let Some(k) = &self.invite_key {
            exts.push(Extension::Unknown(
                INVITE_COMMITMENT_EXTENSION,
                UnknownExtension(k.commitment(&self.room_id)?.to_vec()),
            ));
        }
        let exts = Extensions::from_vec(exts).map_err(mls)?;
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .capabilities(capabilities())
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .max_past_epochs(MAX_PAST_EPOCHS)
            .with_group_context_extensions(exts)
            .build();
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &config,
            GroupId::from_slice(&self.room_id),
            self.credential.clone(),
        )
        .map_err(mls)?;
        self.group = Some(group);
        self.joined_event(now_ms)
    }

    fn group(&self) -> Result<&MlsGroup> {
        self.group.as_ref().ok_or(Error::NotInGroup)
    }

    /// The group's public state for the delivery service: an MLS GroupInfo
    /// (signed by us) with the ratchet tree extension. The creator sends it
    /// once so the server can follow and check commits
    /// ([`crate::server::RoomDelivery`]). It holds no secret.
    pub fn group_info(&self) -> Result<Vec<u8>> {
        let g = self.group()?;
        let gi = g
            .export_group_info(self.provider.crypto(), &self.signer, true)
            .map_err(mls)?;
        ser(&gi)
    }

    /// Current epoch.
    pub fn epoch(&self) -> Result<u64> {
        Ok(self.group()?.epoch().as_u64())
    }

    /// Our leaf index.
    pub fn own_leaf(&self) -> Result<u32> {
        Ok(self.group()?.own_leaf_index().u32())
    }

    /// Roster of the current epoch, from the ratchet tree.
    pub fn roster(&self) -> Result<Vec<RosterEntry>> {
        Ok(self
            .group()?
            .members()
            .map(|m| RosterEntry::from_member(&m))
            .collect())
    }

    /// Our own roster entry (what the server compares with our announce).
    pub fn own_roster_entry(&self) -> Result<RosterEntry> {
        let leaf = self.own_leaf()?;
        self.roster()?
            .into_iter()
            .find(|r| r.leaf_index == leaf)
            .ok_or(Error::NotInGroup)
    }

    /// The MLS epoch authenticator of the current epoch.
    pub fn epoch_authenticator(&self) -> Result<Vec<u8>> {
        Ok(self.group()?.epoch_authenticator().as_slice().to_vec())
    }

    /// Security code of the current epoch (6 groups of 5 digits).
    pub fn security_code(&self) -> Result<String> {
        Ok(security_code(&self.epoch_authenticator()?))
    }

    /// `MLS-Exporter("SFrame 1.0 Base Key", "", 16)` of the current epoch.
    pub fn sframe_base_key(&self) -> Result<Vec<u8>> {
        self.group()?
            .export_secret(self.provider.crypto(), MLS_EXPORTER_LABEL, b"", KEY_LEN)
            .map_err(mls)
    }

    /// The SFrame context fed by this member (e.g. to change retention).
    pub fn sframe_context(&mut self) -> &mut SframeContext {
        &mut self.sframe
    }

    /// Encrypt a media frame under the current epoch (see [`SframeContext::encrypt`]).
    pub fn sframe_encrypt(&mut self, codec: Codec, frame: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.sframe.encrypt(codec, frame, out)
    }

    /// Decrypt a media frame (see [`SframeContext::decrypt`]).
    pub fn sframe_decrypt(
        &mut self,
        codec: Codec,
        frame: &[u8],
        out: &mut Vec<u8>,
        now_ms: u64,
    ) -> Result<FrameInfo> {
        self.sframe.decrypt(codec, frame, out, now_ms)
    }

    fn install_epoch_keys(&mut self, now_ms: u64) -> Result<(u64, Vec<u8>)> {
        let epoch = self.epoch()?;
        let key = self.sframe_base_key()?;
        self.sframe.set_own_leaf(Some(self.own_leaf()?));
        self.sframe.set_epoch_key(epoch, &key, now_ms)?;
        Ok((epoch, key))
    }

    fn joined_event(&mut self, now_ms: u64) -> Result<Vec<Event>> {
        let (epoch, sframe_base_key) = self.install_epoch_keys(now_ms)?;
        Ok(vec![Event::Joined {
            epoch,
            roster: self.roster()?,
            security_code: self.security_code()?,
            sframe_base_key,
        }])
    }

    fn epoch_event(
        &mut self,
        old_roster: &[RosterEntry],
        admitted: Vec<RosterEntry>,
        committer: u32,
        now_ms: u64,
    ) -> Result<Event> {
        let (epoch, sframe_base_key) = self.install_epoch_keys(now_ms)?;
        let roster = self.roster()?;
        let added: Vec<RosterEntry> = roster
            .iter()
            .filter(|r| !old_roster.contains(r))
            .cloned()
            .collect();
        let removed = old_roster
            .iter()
            .filter(|r| !roster.contains(r))
            .cloned()
            .collect();
        let admitted_without_secret = added
            .iter()
            .filter(|r| admitted.iter().any(|a| a.signature_key == r.signature_key))
            .cloned()
            .collect();
        Ok(Event::EpochChanged {
            epoch,
            security_code: self.security_code()?,
            roster,
            sframe_base_key,
            added,
            removed,
            admitted_without_secret,
            committer,
        })
    }

    fn remember_used(&mut self, refs: Vec<Vec<u8>>) {
        if self.used_key_packages.len() + refs.len() > MAX_USED_KEY_PACKAGES {
            // Expired ones are refused anyway; start over rather than grow.
            self.used_key_packages.clear();
        }
        self.used_key_packages.extend(refs);
    }

    fn kp_ref(&self, kp: &KeyPackage) -> Result<Vec<u8>> {
        Ok(kp
            .hash_ref(self.provider.crypto())
            .map_err(mls)?
            .as_slice()
            .to_vec())
    }

    fn parse_key_package(&self, bytes: &[u8]) -> Result<KeyPackage> {
        let kp_in = KeyPackageIn::tls_deserialize_exact(bytes)
            .map_err(|e| Error::Malformed(format!("key package: {e}")))?;
        let kp = kp_in
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(mls)?;
        if kp.ciphersuite() != CIPHERSUITE {
            return Err(Error::InvalidInput("key package ciphersuite"));
        }
        let life = kp.life_time();
        if life.not_after().saturating_sub(life.not_before()) > MAX_KEY_PACKAGE_RANGE_SECS {
            return Err(Error::InvalidInput("key package lives too long"));
        }
        let name = std::str::from_utf8(kp.leaf_node().credential().serialized_content());
        if !name.is_ok_and(valid_member_name) {
            return Err(Error::InvalidInput(
                "joiner's name is not a valid display name",
            ));
        }
        Ok(kp)
    }

    fn new_knock(&mut self, kp: KeyPackage, kp_ref: Vec<u8>, source: KnockSource) -> Event {
        let id = self.next_knock_id;
        self.next_knock_id += 1;
        let joiner = RosterEntry::from_key_package(&kp);
        self.knocks.insert(id, Knock { kp, kp_ref, source });
        Event::Knock {
            knock_id: id,
            joiner,
        }
    }

    /// Handle a join request (from [`Member::join_request`]) relayed by the
    /// server: with a valid invite proof the joiner is queued for the next
    /// commit ([`Event::JoinVerified`]); otherwise it is a [`Event::Knock`].
    /// Members without the invite secret can only treat requests as knocks.
    pub fn handle_join_request(&mut self, bytes: &[u8]) -> Result<Event> {
        self.group()?;
        let req = JoinRequest::from_bytes(bytes)?;
        let kp = self.parse_key_package(&req.key_package)?;
        let kp_ref = self.kp_ref(&kp)?;
        if self.used_key_packages.contains(&kp_ref) {
            // A replay (the server kept an old request): never add a leaf twice.
            return Err(Error::InvalidInput("key package already used"));
        }
        let key = kp.leaf_node().signature_key().as_slice();
        if self.roster()?.iter().any(|r| r.signature_key == key) {
            // A repeated request from someone already added (the joiner
            // retries while its Welcome is in flight): nothing to do.
            return Err(Error::InvalidInput("joiner is already a member"));
        }
        match (&self.invite_key, req.proof) {
            (Some(k), Some(p)) if k.verify(&req.key_package, &p) => {
                self.proofs_seen.insert(kp_ref.clone(), p);
                let joiner = RosterEntry::from_key_package(&kp);
                // Not twice: by value here and as a stored (server) proposal.
                let proposed = self.store_auth.contains_key(&kp_ref);
                if !proposed && !self.queued_adds.iter().any(|a| a.kp_ref == kp_ref) {
                    self.queued_adds.push(PendingAdd {
                        kp,
                        kp_ref,
                        auth: AddAuthorization::Proof(p),
                    });
                }
                Ok(Event::JoinVerified { joiner })
            }
            _ => Ok(self.new_knock(kp, kp_ref, KnockSource::ByValue)),
        }
    }

    /// Like [`Member::handle_join_request`] but refuses (error) anything
    /// without a valid proof instead of reporting a knock.
    pub fn add_with_secret_proof(&mut self, join_request: &[u8]) -> Result<RosterEntry> {
        match self.handle_join_request(join_request)? {
            Event::JoinVerified { joiner } => Ok(joiner),
            Event::Knock { knock_id, .. } => {
                self.knocks.remove(&knock_id);
                Err(Error::CommitRefused(
                    "join request without valid invite proof".into(),
                ))
            }
            _ => Err(Error::InvalidInput("unexpected")),
        }
    }

    /// Admit a knocking joiner (human decision); it is added by the next commit.
    pub fn admit(&mut self, knock_id: u64) -> Result<()> {
        let k = self.knocks.remove(&knock_id).ok_or(Error::UnknownKnock)?;
        match k.source {
            KnockSource::ByValue => self.queued_adds.push(PendingAdd {
                kp: k.kp,
                kp_ref: k.kp_ref,
                auth: AddAuthorization::Admitted,
            }),
            KnockSource::Proposal(q) => {
                let provider = &self.provider;
                let g = self.group.as_mut().ok_or(Error::NotInGroup)?;
                g.store_pending_proposal(provider.storage(), *q)
                    .map_err(mls)?;
                self.store_auth.insert(k.kp_ref, AddAuthorization::Admitted);
            }
        }
        Ok(())
    }

    /// Refuse a knocking joiner.
    pub fn reject(&mut self, knock_id: u64) -> Result<()> {
        self.knocks
            .remove(&knock_id)
            .map(|_| ())
            .ok_or(Error::UnknownKnock)
    }

    /// Queue removal of a member (by leaf index) for the next commit.
    pub fn remove(&mut self, leaf_index: u32) -> Result<()> {
        let g = self.group()?;
        if leaf_index == g.own_leaf_index().u32() {
            return Err(Error::InvalidInput("use leave() to remove yourself"));
        }
        if !g.members().any(|m| m.index.u32() == leaf_index) {
            return Err(Error::InvalidInput("no such member"));
        }
        let l = LeafNodeIndex::new(leaf_index);
        if !self.queued_removals.contains(&l) {
            self.queued_removals.push(l);
        }
        Ok(())
    }

    /// Propose our own removal (a member commits it). Returns the proposal.
    pub fn leave(&mut self) -> Result<Vec<u8>> {
        let provider = &self.provider;
        let g = self.group.as_mut().ok_or(Error::NotInGroup)?;
        let msg = g.leave_group(provider, &self.signer).map_err(mls)?;
        ser(&msg)
    }

    /// Ask the next commit to refresh our own leaf keys (an MLS path
    /// update). Call it periodically (the caller owns the timer) so a
    /// compromised device stops being able to decrypt: post-compromise
    /// security. Then call [`Member::commit_pending`].
    pub fn request_self_update(&mut self) -> Result<()> {
        self.group()?;
        self.want_self_update = true;
        Ok(())
    }

    /// Whether anything waits to be committed.
    pub fn has_pending(&self) -> bool {
        self.want_self_update
            || !self.queued_adds.is_empty()
            || !self.queued_removals.is_empty()
            || self
                .group
                .as_ref()
                .is_some_and(|g| g.has_pending_proposals())
    }

    /// Commit queued Adds/Removes and stored proposals (e.g. the server's
    /// external Removes). Returns `None` if there is nothing to commit.
    ///
    /// The commit is applied when the DS echoes it back (or on
    /// [`Member::confirm_commit`]).
    pub fn commit_pending(&mut self) -> Result<Option<CommitOutput>> {
        if self.pending_commit.is_some() {
            return Err(Error::CommitPending);
        }
        if !self.has_pending() {
            return Ok(None);
        }
        let provider = &self.provider;
        let g = self.group.as_mut().ok_or(Error::NotInGroup)?;
        let mut auths = AddAuthorizations::default();
        for a in &self.queued_adds {
            auths.0.push((a.kp_ref.clone(), a.auth.clone()));
        }
        for q in g.pending_proposals() {
            if let Proposal::Add(add) = q.proposal() {
                let r = add
                    .key_package()
                    .hash_ref(provider.crypto())
                    .map_err(mls)?
                    .as_slice()
                    .to_vec();
                let a = self
                    .store_auth
                    .get(&r)
                    .cloned()
                    .ok_or(Error::InvalidInput("unauthorized add in proposal store"))?;
                auths.0.push((r, a));
            }
        }
        // A leaf already covered by a stored Remove proposal (e.g. the
        // server's) must not be removed twice in one commit.
        let proposed_removals: Vec<LeafNodeIndex> = g
            .pending_proposals()
            .filter_map(|q| match q.proposal() {
                Proposal::Remove(r) => Some(r.removed()),
                _ => None,
            })
            .collect();
        g.set_aad(auths.to_bytes());
        let adds = std::mem::take(&mut self.queued_adds);
        let removals = std::mem::take(&mut self.queued_removals);
        let own_removals: Vec<LeafNodeIndex> = removals
            .iter()
            .copied()
            .filter(|l| !proposed_removals.contains(l))
            .collect();
        let res = g
            .commit_builder()
            .propose_adds(adds.iter().map(|a| a.kp.clone()))
            .propose_removals(own_removals)
            .consume_proposal_store(true)
            .force_self_update(self.want_self_update)
            .load_psks(provider.storage())
            .map_err(mls)
            .and_then(|b| {
                b.build(provider.rand(), provider.crypto(), &self.signer, |_| true)
                    .map_err(mls)
            })
            .and_then(|b| b.stage_commit(provider).map_err(mls));
        g.set_aad(Vec::new());
        let bundle = match res {
            Ok(b) => b,
            Err(e) => {
                self.queued_adds = adds;
                self.queued_removals = removals;
                return Err(e);
            }
        };
        let (commit, welcome, _gi) = bundle.into_contents();
        let commit = ser(&commit)?;
        let welcome = welcome
            .map(|w| ser(&MlsMessageOut::from_welcome(w, ProtocolVersion::Mls10)))
            .transpose()?;
        self.want_self_update = false;
        self.pending_commit = Some(PendingCommit {
            bytes: commit.clone(),
            adds,
            removals,
        });
        Ok(Some(CommitOutput { commit, welcome }))
    }

    /// Apply our pending commit (the DS accepted it).
    pub fn confirm_commit(&mut self, now_ms: u64) -> Result<Vec<Event>> {
        let pc = self
            .pending_commit
            .take()
            .ok_or(Error::InvalidInput("no pending commit"))?;
        let old = self.roster()?;
        let old_epoch = self.epoch()?;
        let provider = &self.provider;
        let g = self.group.as_mut().ok_or(Error::NotInGroup)?;
        let me = g.own_leaf_index().u32();
        g.merge_pending_commit(provider).map_err(mls)?;
        self.remember_roster(old_epoch, old.clone());
        self.store_auth.clear();
        self.remember_used(pc.adds.iter().map(|a| a.kp_ref.clone()).collect());
        let admitted: Vec<RosterEntry> = pc
            .adds
            .iter()
            .filter(|a| a.auth == AddAuthorization::Admitted)
            .map(|a| RosterEntry::from_key_package(&a.kp))
            .collect();
        Ok(vec![self.epoch_event(&old, admitted, me, now_ms)?])
    }

    /// Drop our pending commit (e.g. the DS rejected it); its Adds and
    /// Removes are queued again.
    pub fn discard_pending_commit(&mut self) -> Result<()> {
        if let Some(pc) = self.pending_commit.take() {
            let provider = &self.provider;
            if let Some(g) = self.group.as_mut() {
                g.clear_pending_commit(provider.storage()).map_err(mls)?;
            }
            for a in pc.adds {
                if !self.queued_adds.iter().any(|q| q.kp_ref == a.kp_ref) {
                    self.queued_adds.push(a);
                }
            }
            for r in pc.removals {
                if !self.queued_removals.contains(&r) {
                    self.queued_removals.push(r);
                }
            }
        }
        Ok(())
    }

    /// Encrypt a chat message as an MLS application message, with no send time.
    pub fn encrypt_chat(&mut self, text: &str) -> Result<Vec<u8>> {
        self.encrypt_chat_at(text, 0)
    }

    /// Encrypt a chat message with its send time (ms since the Unix epoch)
    /// and our next message counter inside the encryption:
    /// `u64 sent_at || u32 counter || text`.
    pub fn encrypt_chat_at(&mut self, text: &str, sent_at_ms: u64) -> Result<Vec<u8>> {
        let mut body = Vec::with_capacity(12 + text.len());
        body.extend_from_slice(&sent_at_ms.to_be_bytes());
        body.extend_from_slice(&self.chat_counter.to_be_bytes());
        body.extend_from_slice(text.as_bytes());
        let out = self.encrypt_app(APP_CHAT, &body)?;
        self.chat_counter = self.chat_counter.wrapping_add(1);
        Ok(out)
    }

    /// Encrypt a control message (opaque bytes) as an MLS application message.
    pub fn encrypt_control(&mut self, payload: &[u8]) -> Result<Vec<u8>> {
        self.encrypt_app(APP_CONTROL, payload)
    }

    fn encrypt_app(&mut self, kind: u8, body: &[u8]) -> Result<Vec<u8>> {
        if self.pending_commit.is_some() {
            // openmls refuses application messages while a commit is pending.
            return Err(Error::CommitPending);
        }
        let mut pt = Vec::with_capacity(body.len() + 1);
        pt.push(kind);
        pt.extend_from_slice(body);
        let provider = &self.provider;
        let g = self.group.as_mut().ok_or(Error::NotInGroup)?;
        let msg = g.create_message(provider, &self.signer, &pt).map_err(mls)?;
        ser(&msg)
    }

    /// Process one message from the delivery service: an MLS Welcome, commit,
    /// proposal or application message, or a join request.
    ///
    /// Errors leave the state unchanged. [`Error::EpochMismatch`] with
    /// `message > local` means we missed a commit: call
    /// [`Member::rejoin_request`].
    pub fn process_incoming(&mut self, bytes: &[u8], now_ms: u64) -> Result<Vec<Event>> {
        if JoinRequest::is_join_request(bytes) {
            return Ok(vec![self.handle_join_request(bytes)?]);
        }
        if let Some(pc) = &self.pending_commit {
            if pc.bytes == bytes {
                return self.confirm_commit(now_ms);
            }
        }
        let msg = MlsMessageIn::tls_deserialize_exact(bytes)
            .map_err(|e| Error::Malformed(format!("MLS message: {e}")))?;
        let protocol: ProtocolMessage = match msg.extract() {
            MlsMessageBodyIn::Welcome(w) => return self.join_from_welcome(w, now_ms),
            MlsMessageBodyIn::PublicMessage(m) => m.into(),
            MlsMessageBodyIn::PrivateMessage(m) => m.into(),
            _ => return Err(Error::InvalidInput("unsupported MLS message type")),
        };
        let g = self.group()?;
        if protocol.group_id() != g.group_id() {
            return Err(Error::WrongGroup);
        }
        let local = g.epoch().as_u64();
        let message = protocol.epoch().as_u64();
        let is_app = protocol.content_type() == ContentType::Application;
        if message > local || (message < local && !is_app) {
            return Err(Error::EpochMismatch { local, message });
        }
        if matches!(
            &protocol,
            ProtocolMessage::PublicMessage(p) if matches!(p.sender(), Sender::NewMemberCommit | Sender::NewMemberProposal)
        ) {
            return Err(Error::CommitRefused(
                "external joins are not allowed".into(),
            ));
        }
        let mut events = Vec::new();
        if protocol.content_type() == ContentType::Commit && self.pending_commit.is_some() {
            // Another commit won this epoch: drop ours, retry its contents later.
            self.discard_pending_commit()?;
            events.push(Event::CommitDiscarded);
        }
        let provider = &self.provider;
        let g = self.group.as_mut().ok_or(Error::NotInGroup)?;
        let processed = g.process_message(provider, protocol).map_err(mls)?;
        let aad = processed.aad().to_vec();
        let sender = processed.sender().clone();
        let cred = processed.credential().clone();
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                let data = app.into_bytes();
                let Sender::Member(leaf) = sender else {
                    return Err(Error::InvalidInput("application message from non-member"));
                };
                // The sender as it was in the message's epoch: a late message
                // from a past epoch is not credited to whoever holds that
                // leaf now (a member who rejoined is a new session, with a
                // new signature key and chat counter). If that roster is
                // gone, the name in the message's credential, with no key.
                let entry = match self.roster_of_epoch(message)?.into_iter().find(|r| {
                    r.leaf_index == leaf.u32()
                        && r.display_name.as_bytes() == cred.serialized_content()
                }) {
                    Some(e) => e,
                    None => RosterEntry {
                        leaf_index: leaf.u32(),
                        display_name: String::from_utf8_lossy(cred.serialized_content())
                            .into_owned(),
                        signature_key: Vec::new(),
                    },
                };
                match data.split_first() {
                    Some((&APP_CHAT, body)) if body.len() >= 12 => {
                        let (sent_at, rest) = body.split_at(8);
                        let (counter, text) = rest.split_at(4);
                        events.push(Event::Chat {
                            sender: entry,
                            text: String::from_utf8(text.to_vec())
                                .map_err(|_| Error::Malformed("chat text not UTF-8".into()))?,
                            sent_at_ms: u64::from_be_bytes(
                                sent_at.try_into().map_err(|_| Error::Crypto)?,
                            ),
                            counter: u32::from_be_bytes(
                                counter.try_into().map_err(|_| Error::Crypto)?,
                            ),
                        })
                    }
                    Some((&APP_CONTROL, p)) => events.push(Event::Control {
                        sender: entry,
                        payload: p.to_vec(),
                    }),
                    _ => return Err(Error::Malformed("application payload".into())),
                }
            }
            ProcessedMessageContent::ProposalMessage(q) => {
                events.push(self.handle_proposal(q, &sender)?);
            }
            ProcessedMessageContent::OwnPendingCommit => {
                // Our own commit came back (not byte-identical, e.g. re-framed).
                events.extend(self.confirm_commit(now_ms)?);
            }
            ProcessedMessageContent::OwnPrivateMessage => {}
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => {
                return Err(Error::CommitRefused(
                    "external join proposals are not allowed".into(),
                ));
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let committer = match sender {
                    Sender::Member(l) => l.u32(),
                    _ => return Err(Error::CommitRefused("commit from non-member".into())),
                };
                // The group context's extensions (the server as external
                // sender, the invite commitment) are fixed at creation: a
                // member could otherwise swap the commitment for one of a
                // key of its own and have it adopted by knock-admitted members.
                let g = self.group()?;
                if staged.group_context().extensions() != g.extensions() {
                    return Err(Error::CommitRefused(
                        "commit changes the group context extensions".into(),
                    ));
                }
                let auths = AddAuthorizations::from_bytes(&aad)?;
                let mut admitted = Vec::new();
                let mut used = Vec::new();
                for add in staged.add_proposals() {
                    let kp = add.add_proposal().key_package();
                    let kp_bytes = ser(kp)?;
                    let r = self.kp_ref(kp)?;
                    if self.used_key_packages.contains(&r) {
                        return Err(Error::CommitRefused(
                            "Add of a key package that was already used".into(),
                        ));
                    }
                    used.push(r.clone());
                    match auths.get(&r) {
                        Some(AddAuthorization::Proof(p)) => {
                            if let Some(k) = &self.invite_key {
                                if !k.verify(&kp_bytes, p) {
                                    return Err(Error::CommitRefused(
                                        "Add with invalid invite proof".into(),
                                    ));
                                }
                            }
                            // Without the secret we cannot check; we rely on
                            // the committer (an authenticated member).
                        }
                        Some(AddAuthorization::Admitted) => {
                            admitted.push(RosterEntry::from_key_package(kp))
                        }
                        None => {
                            return Err(Error::CommitRefused(
                                "Add without invite proof or admission".into(),
                            ))
                        }
                    }
                }
                let self_removed = staged.self_removed();
                let old = self.roster()?;
                let old_epoch = self.epoch()?;
                let provider = &self.provider;
                let g = self.group.as_mut().ok_or(Error::NotInGroup)?;
                g.merge_staged_commit(provider, *staged).map_err(mls)?;
                self.remember_roster(old_epoch, old.clone());
                self.store_auth.clear();
                self.remember_used(used);
                if self_removed {
                    // Out of the stored state too: a Welcome back into this
                    // group (we rejoin) is refused while it is there.
                    if let Some(mut g) = self.group.take() {
                        let _ = g.delete(self.provider.storage());
                    }
                    self.reset_local_state();
                    events.push(Event::Removed { committer });
                } else {
                    // Drop queued adds/removals that this commit already applied.
                    let roster = self.roster()?;
                    self.queued_adds.retain(|a| {
                        let sk = a.kp.leaf_node().signature_key().as_slice();
                        !roster.iter().any(|r| r.signature_key == sk)
                    });
                    self.queued_removals.retain(|l| {
                        old.iter().any(|r| r.leaf_index == l.u32())
                            && roster.iter().any(|r| r.leaf_index == l.u32())
                    });
                    events.push(self.epoch_event(&old, admitted, committer, now_ms)?);
                }
            }
        }
        Ok(events)
    }

    fn handle_proposal(&mut self, q: Box<QueuedProposal>, sender: &Sender) -> Result<Event> {
        let by_server = matches!(sender, Sender::External(_));
        match q.proposal() {
            Proposal::Remove(r) => {
                let leaf_index = r.removed().u32();
                let provider = &self.provider;
                let g = self.group.as_mut().ok_or(Error::NotInGroup)?;
                g.store_pending_proposal(provider.storage(), *q)
                    .map_err(mls)?;
                Ok(Event::RemoveProposed {
                    leaf_index,
                    by_server,
                })
            }
            Proposal::Add(a) => {
                let kp = a.key_package().clone();
                let r = self.kp_ref(&kp)?;
                if let Some(p) = self.proofs_seen.get(&r).copied() {
                    if self.queued_adds.iter().any(|a| a.kp_ref == r) {
                        // Already queued from the join request itself: one Add is enough.
                        return Ok(Event::JoinVerified {
                            joiner: RosterEntry::from_key_package(&kp),
                        });
                    }
                    let provider = &self.provider;
                    let g = self.group.as_mut().ok_or(Error::NotInGroup)?;
                    g.store_pending_proposal(provider.storage(), *q)
                        .map_err(mls)?;
                    self.store_auth.insert(r, AddAuthorization::Proof(p));
                    Ok(Event::JoinVerified {
                        joiner: RosterEntry::from_key_package(&kp),
                    })
                } else {
                    Ok(self.new_knock(kp, r, KnockSource::Proposal(q)))
                }
            }
            _ => Err(Error::CommitRefused(
                "only Add and Remove proposals are accepted".into(),
            )),
        }
    }

    fn join_from_welcome(&mut self, welcome: Welcome, now_ms: u64) -> Result<Vec<Event>> {
        if self.group.is_some() {
            return Err(Error::AlreadyInGroup);
        }
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .max_past_epochs(MAX_PAST_EPOCHS)
            .build();
        let staged =
            StagedWelcome::new_from_welcome(&self.provider, &config, welcome, None).map_err(mls)?;
        if staged.group_context().group_id().as_slice() != self.room_id.as_slice() {
            return Err(Error::WrongGroup);
        }
        if staged.group_context().ciphersuite() != CIPHERSUITE {
            return Err(Error::InvalidInput("group ciphersuite"));
        }
        let group = staged.into_group(&self.provider).map_err(mls)?;
        self.group = Some(group);
        self.joined_event(now_ms)
    }
}

#[cfg(test)]
impl Member {
    /// What a malicious member could send: a commit adding a joiner with no
    /// authorization in its authenticated data (honest members never do).
    pub(crate) fn commit_add_without_authorization(
        &mut self,
        join_request: &[u8],
    ) -> Result<Vec<u8>> {
        let req = JoinRequest::from_bytes(join_request)?;
        let kp = self.parse_key_package(&req.key_package)?;
        let provider = &self.provider;
        let g = self.group.as_mut().ok_or(Error::NotInGroup)?;
        let bundle = g
            .commit_builder()
            .propose_adds([kp])
            .load_psks(provider.storage())
            .map_err(mls)?
            .build(provider.rand(), provider.crypto(), &self.signer, |_| true)
            .map_err(mls)?
            .stage_commit(provider)
            .map_err(mls)?;
        let (commit, _, _) = bundle.into_contents();
        ser(&commit)
    }

    /// What a malicious member could send: a commit that replaces the
    /// group's invite commitment with `commitment` (honest members never
    /// change the group context).
    pub(crate) fn commit_invite_commitment(&mut self, commitment: &[u8]) -> Result<Vec<u8>> {
        let provider = &self.provider;
        let g = self.group.as_mut().ok_or(Error::NotInGroup)?;
        let mut exts: Vec<Extension> = g
            .extensions()
            .iter()
            .filter(|e| e.extension_type() != ExtensionType::Unknown(INVITE_COMMITMENT_EXTENSION))
            .cloned()
            .collect();
        exts.push(Extension::Unknown(
            INVITE_COMMITMENT_EXTENSION,
            UnknownExtension(commitment.to_vec()),
        ));
        // openmls changes the group context only to extensions every
        // member is required to support.
        exts.push(Extension::RequiredCapabilities(
            RequiredCapabilitiesExtension::new(
                &[ExtensionType::Unknown(INVITE_COMMITMENT_EXTENSION)],
                &[],
                &[],
            ),
        ));
        let bundle = g
            .commit_builder()
            .propose_group_context_extensions(Extensions::from_vec(exts).map_err(mls)?)
            .map_err(mls)?
            .load_psks(provider.storage())
            .map_err(mls)?
            .build(provider.rand(), provider.crypto(), &self.signer, |_| true)
            .map_err(mls)?
            .stage_commit(provider)
            .map_err(mls)?;
        let (commit, _, _) = bundle.into_contents();
        ser(&commit)
    }
}
