//! The server as MLS delivery service for one room.
//!
//! It holds no group secret: only the public tree ([`RoomDelivery`]) and
//! which participant holds which signature key. From that it decides who
//! creates the group, relays join requests to members, accepts the first
//! valid commit per epoch and relays it, routes Welcomes to the joiners they
//! add, relays encrypted chat, and proposes (as the group's external sender)
//! the removal of leaves whose participant is gone.
//!
//! Pure logic with no IO: every call returns [`Out`] actions, which the
//! room's delivery task (`delivery_task`) hands to the control task.

use std::collections::{BTreeSet, HashMap, HashSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use conclave_e2ee::server::{join_request_identity, DeliveryServiceSigner, RoomDelivery};
use conclave_protocol::{
    E2eeStart, ErrorCode, ParticipantId, ServerMessage, MAX_CHAT_CIPHERTEXT_BYTES,
    MAX_JOIN_REQUEST_BYTES, MAX_MLS_BYTES,
};

/// The server's MLS identity, shared by all rooms.
pub struct Signer {
    signer: DeliveryServiceSigner,
    external_sender: Vec<u8>,
    /// Test mode: try to slip every knocking participant into the group
    /// with a server-signed Add proposal (members must refuse it).
    #[cfg(feature = "test-modes")]
    try_ghost_adds: bool,
    /// Test mode: label each subscriber's media as another publisher's
    /// (members must not show it under the wrong name).
    #[cfg(feature = "test-modes")]
    mislabel_media: bool,
}

impl Signer {
    pub fn generate() -> Result<Self, String> {
        let signer = DeliveryServiceSigner::generate("conclave server")
            .map_err(|e| format!("cannot create the server's MLS key: {e}"))?;
        let external_sender = signer.external_sender().map_err(|e| e.to_string())?;
        Ok(Signer {
            signer,
            external_sender,
            #[cfg(feature = "test-modes")]
            try_ghost_adds: false,
            #[cfg(feature = "test-modes")]
            mislabel_media: false,
        })
    }

    /// Test mode (`test-modes` feature only): tell subscribers that each
    /// publisher's tracks are another publisher's.
    #[cfg(feature = "test-modes")]
    pub fn with_mislabelled_media(mut self, on: bool) -> Self {
        if on {
            tracing::warn!("TEST MODE: this server labels media as another participant's");
        }
        self.mislabel_media = on;
        self
    }

    /// Whether the mislabelling test mode is on (always false in normal builds).
    pub fn mislabels_media(&self) -> bool {
        #[cfg(feature = "test-modes")]
        return self.mislabel_media;
        #[cfg(not(feature = "test-modes"))]
        false
    }

    /// Test mode (`test-modes` feature only): try to add every knocker with a server-signed Add.
    #[cfg(feature = "test-modes")]
    pub fn with_ghost_adds(mut self, on: bool) -> Self {
        if on {
            tracing::warn!(
                "TEST MODE: this server tries to add knocking participants without consent"
            );
        }
        self.try_ghost_adds = on;
        self
    }

    /// How a participant starts: by creating the room's group, or by asking to join it.
    pub fn start(&self, create: bool) -> E2eeStart {
        E2eeStart {
            create,
            external_sender: B64.encode(&self.external_sender),
        }
    }
}

/// What the control task should do.
#[derive(Debug, PartialEq)]
pub enum Out {
    /// Send a message to one participant.
    To(ParticipantId, ServerMessage),
    /// The participant's MLS signature key (hex) is now this: announce it.
    Key(ParticipantId, String),
    /// Disconnect the participant (after the messages before this).
    Close(ParticipantId),
    /// A commit added members to this participant's room: new keyframes
    /// are needed, sealed under the new epoch (see
    /// `conclave_sfu::Sfu::request_room_keyframes`).
    Keyframes(ParticipantId),
}

#[derive(Default)]
pub struct RoomMls {
    group: Option<RoomDelivery>,
    /// Told to create the group; its `group_created` is awaited.
    creator: Option<ParticipantId>,
    present: BTreeSet<ParticipantId>,
    /// Each participant's current signature key (latest join request, or the
    /// creator's leaf).
    keys: HashMap<ParticipantId, Vec<u8>>,
    /// Join requests (base64, as received) that arrived before the group existed.
    waiting: Vec<(ParticipantId, String)>,
    /// Removals already proposed, by (epoch, leaf).
    proposed: HashSet<(u64, u32)>,
    next_chat_seq: u32,
}

fn bad(message: impl Into<String>) -> ServerMessage {
    ServerMessage::error(ErrorCode::BadMls, message)
}

fn decode(data: &str, limit: usize) -> Result<Vec<u8>, ServerMessage> {
    if data.len() > limit {
        return Err(ServerMessage::error(
            ErrorCode::TooLarge,
            format!("MLS data is {} bytes; the limit is {limit}", data.len()),
        ));
    }
    B64.decode(data)
        .map_err(|_| bad("MLS data must be standard base64"))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl RoomMls {
    /// A participant entered; returns whether it is to create the group.
    /// That is so exactly when the room was empty (`left` hands creation on
    /// while anyone is present), which lets the control task welcome a
    /// joiner without waiting for this task.
    pub fn joined(&mut self, id: ParticipantId) -> bool {
        self.present.insert(id);
        if self.group.is_none() && self.creator.is_none() {
            self.creator = Some(id);
            return true;
        }
        false
    }

    fn is_member(&self, id: ParticipantId) -> bool {
        match (&self.group, self.keys.get(&id)) {
            (Some(g), Some(k)) => g.leaf_of(k).is_some(),
            _ => false,
        }
    }

    fn members(&self) -> Vec<ParticipantId> {
        self.present
            .iter()
            .copied()
            .filter(|&p| self.is_member(p))
            .collect()
    }

    /// `mls {from, data}` to every member; `data` is base64, as received or encoded once.
    fn mls_to_members(&self, from: Option<ParticipantId>, data: &str) -> Vec<Out> {
        let message = ServerMessage::Mls {
            from,
            data: data.to_owned(),
        };
        self.members()
            .into_iter()
            .map(|p| Out::To(p, message.clone()))
            .collect()
    }

    /// The creator's GroupInfo: start following the group.
    pub fn group_created(
        &mut self,
        id: ParticipantId,
        room: &str,
        data: &str,
        signer: &Signer,
    ) -> Result<Vec<Out>, ServerMessage> {
        if self.creator != Some(id) || self.group.is_some() {
            return Err(bad("you were not asked to create this room's group"));
        }
        let bytes = decode(data, MAX_MLS_BYTES)?;
        let group = RoomDelivery::from_group_info(&bytes, room.as_bytes(), &signer.external_sender)
            .map_err(|e| bad(format!("group refused: {e}")))?;
        let roster = group.roster();
        let [creator] = roster.as_slice() else {
            return Err(bad("a new group must have exactly one member"));
        };
        if self
            .keys
            .iter()
            .any(|(&p, k)| p != id && *k == creator.signature_key)
        {
            return Err(bad("that signature key belongs to another participant"));
        }
        let mut out = vec![Out::Key(id, hex(&creator.signature_key))];
        self.keys.insert(id, creator.signature_key.clone());
        self.group = Some(group);
        self.creator = None;
        self.proposed.clear();
        for (from, request) in std::mem::take(&mut self.waiting) {
            if from != id && self.present.contains(&from) {
                out.extend(self.mls_to_members(Some(from), &request));
            }
        }
        Ok(out)
    }

    /// A join request: relayed to the members (or kept until the group exists).
    pub fn join_request(
        &mut self,
        id: ParticipantId,
        data: &str,
        signer: &Signer,
    ) -> Result<Vec<Out>, ServerMessage> {
        // Relayed to every member: the cheap size check comes first.
        let bytes = decode(data, MAX_JOIN_REQUEST_BYTES)?;
        let (identity, has_proof) =
            join_request_identity(&bytes).map_err(|e| bad(format!("join request refused: {e}")))?;
        let key = identity.signature_key;
        if self.keys.iter().any(|(&p, k)| p != id && *k == key) {
            return Err(bad("that signature key belongs to another participant"));
        }
        if self.creator == Some(id) {
            // Sent before it was asked to create the group: it creates instead.
            return Ok(Vec::new());
        }
        let mut out = vec![Out::Key(id, hex(&key))];
        let old = self.keys.insert(id, key);
        if self.group.is_none() {
            self.waiting.retain(|(p, _)| *p != id);
            self.waiting.push((id, data.to_owned()));
            return Ok(out);
        }
        if old.is_some() {
            // A rejoin: the old leaf no longer belongs to anyone present.
            out.extend(self.propose_orphan_removals(signer));
        }
        out.extend(self.mls_to_members(Some(id), data));
        let knock = !has_proof;
        out.extend(self.ghost_add(id, &bytes, knock, signer));
        Ok(out)
    }

    /// Test mode only (`test-modes` feature and CONCLAVE_TEST_GHOST_ADDS):
    /// the server proposes to add a knocker on its own.
    #[cfg(feature = "test-modes")]
    fn ghost_add(
        &mut self,
        id: ParticipantId,
        bytes: &[u8],
        knock: bool,
        signer: &Signer,
    ) -> Vec<Out> {
        if !knock || !signer.try_ghost_adds {
            return Vec::new();
        }
        let Some(group) = &self.group else {
            return Vec::new();
        };
        let Ok(kp) = conclave_e2ee::server::join_request_key_package(bytes) else {
            return Vec::new();
        };
        match signer
            .signer
            .add_proposal(group.group_id(), group.epoch(), &kp)
        {
            Ok(p) => {
                tracing::warn!(
                    participant = id,
                    "test mode: proposing to add a participant without its members' consent"
                );
                self.mls_to_members(None, &B64.encode(p))
            }
            Err(_) => Vec::new(),
        }
    }

    /// Without the `test-modes` feature the server never proposes an Add.
    #[cfg(not(feature = "test-modes"))]
    fn ghost_add(&mut self, _: ParticipantId, _: &[u8], _: bool, _: &Signer) -> Vec<Out> {
        Vec::new()
    }

    /// A member's commit: the first valid one for the epoch is relayed to
    /// the members (committer included) and its Welcome to the joiners.
    pub fn commit(
        &mut self,
        id: ParticipantId,
        commit: &str,
        welcome: Option<&str>,
        signer: &Signer,
    ) -> Result<Vec<Out>, ServerMessage> {
        if !self.is_member(id) {
            return Err(bad("only members of the group can commit"));
        }
        let commit_bytes = decode(commit, MAX_MLS_BYTES)?;
        if let Some(w) = welcome {
            // Checked, then relayed as received.
            decode(w, MAX_MLS_BYTES)?;
        }
        let members_before = self.members();
        let own_leaf = self
            .keys
            .get(&id)
            .and_then(|k| self.group.as_ref()?.leaf_of(k));
        let group = self.group.as_mut().ok_or_else(|| bad("no group yet"))?;
        let applied = match group.handle_commit(&commit_bytes) {
            Ok(a) => a,
            Err(conclave_e2ee::Error::EpochMismatch { .. }) => {
                return Ok(vec![Out::To(
                    id,
                    ServerMessage::CommitRejected {
                        reason: "epoch_moved".into(),
                    },
                )])
            }
            Err(e) => {
                return Ok(vec![Out::To(
                    id,
                    ServerMessage::CommitRejected {
                        reason: format!("invalid commit: {e}"),
                    },
                )])
            }
        };
        if own_leaf != Some(applied.committer) {
            tracing::warn!(
                participant = id,
                "relayed a commit signed by another member"
            );
        }
        let mut out = Vec::new();
        let relayed = ServerMessage::Mls {
            from: Some(id),
            data: commit.to_owned(),
        };
        for p in members_before {
            out.push(Out::To(p, relayed.clone()));
        }
        if let Some(w) = welcome {
            let welcome = ServerMessage::Mls {
                from: Some(id),
                data: w.to_owned(),
            };
            for added in &applied.added {
                for (&p, k) in &self.keys {
                    if *k == added.signature_key && self.present.contains(&p) {
                        out.push(Out::To(p, welcome.clone()));
                    }
                }
            }
        }
        if !applied.added.is_empty() {
            out.push(Out::Keyframes(id));
        }
        out.extend(self.propose_orphan_removals(signer));
        Ok(out)
    }

    /// Encrypted chat from a member, numbered in room order, to all members.
    pub fn chat(
        &mut self,
        id: ParticipantId,
        data: &str,
        sent_at: u64,
    ) -> Result<Vec<Out>, ServerMessage> {
        let bytes = decode(data, MAX_CHAT_CIPHERTEXT_BYTES)?;
        if !self.is_member(id) {
            return Err(ServerMessage::error(
                ErrorCode::NotJoined,
                "chat is only possible once you are in the encrypted group",
            ));
        }
        if let Some(g) = &self.group {
            g.check_application(&bytes)
                .map_err(|e| bad(format!("chat refused: {e}")))?;
        }
        let seq = self.next_chat_seq;
        self.next_chat_seq = self.next_chat_seq.wrapping_add(1);
        let message = ServerMessage::Chat {
            seq,
            from: id,
            data: data.to_owned(),
            sent_at,
        };
        Ok(self
            .members()
            .into_iter()
            .map(|p| Out::To(p, message.clone()))
            .collect())
    }

    /// A member refuses a knocking participant.
    pub fn deny_knock(
        &mut self,
        id: ParticipantId,
        target: ParticipantId,
    ) -> Result<Vec<Out>, ServerMessage> {
        if !self.is_member(id) {
            return Err(bad("only members can decide who joins"));
        }
        if !self.present.contains(&target) || self.is_member(target) {
            return Ok(Vec::new());
        }
        Ok(vec![
            Out::To(
                target,
                ServerMessage::error(
                    ErrorCode::KnockDenied,
                    "someone in the meeting declined your request to join",
                ),
            ),
            Out::Close(target),
        ])
    }

    /// A participant is gone: propose removing its leaf, or hand the group's
    /// creation to someone else.
    pub fn left(&mut self, id: ParticipantId, signer: &Signer) -> Vec<Out> {
        self.present.remove(&id);
        self.keys.remove(&id);
        self.waiting.retain(|(p, _)| *p != id);
        if self.creator == Some(id) {
            self.creator = None;
        }
        if self.group.is_some() && self.members().is_empty() {
            // Nobody who holds the group's keys is connected: the group is gone.
            self.group = None;
            self.proposed.clear();
        }
        if self.group.is_none() {
            if self.creator.is_none() {
                if let Some(&next) = self.present.iter().next() {
                    self.creator = Some(next);
                    self.waiting.retain(|(p, _)| *p != next);
                    return vec![Out::To(
                        next,
                        ServerMessage::CreateGroup {
                            e2ee: signer.start(true),
                        },
                    )];
                }
            }
            return Vec::new();
        }
        self.propose_orphan_removals(signer)
    }

    /// Propose removing every leaf whose signature key belongs to nobody
    /// present, once per epoch.
    fn propose_orphan_removals(&mut self, signer: &Signer) -> Vec<Out> {
        let Some(group) = self.group.as_mut() else {
            return Vec::new();
        };
        let epoch = group.epoch();
        self.proposed.retain(|(e, _)| *e == epoch);
        let owned: HashSet<&Vec<u8>> = self
            .present
            .iter()
            .filter_map(|p| self.keys.get(p))
            .collect();
        let orphans: Vec<u32> = group
            .roster()
            .into_iter()
            .filter(|r| !owned.contains(&r.signature_key))
            .map(|r| r.leaf_index)
            .filter(|&leaf| !self.proposed.contains(&(epoch, leaf)))
            .collect();
        let mut proposals = Vec::new();
        for leaf in orphans {
            self.proposed.insert((epoch, leaf));
            match signer.signer.remove_proposal(group.group_id(), epoch, leaf) {
                Ok(p) => match group.handle_proposal(&p) {
                    Ok(()) => proposals.push(p),
                    Err(e) => tracing::error!(leaf, "own remove proposal refused: {e}"),
                },
                Err(e) => tracing::error!(leaf, "cannot sign a remove proposal: {e}"),
            }
        }
        proposals
            .iter()
            .flat_map(|p| self.mls_to_members(None, &B64.encode(p)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The control task tells a joiner to create the group exactly when the
    /// room was empty; `joined` must agree at every step.
    #[test]
    fn a_joiner_creates_the_group_exactly_when_the_room_was_empty() {
        let signer = Signer::generate().expect("signer");
        let mut room = RoomMls::default();
        let join = |room: &mut RoomMls, id| {
            let was_empty = room.present.is_empty();
            assert_eq!(room.joined(id), was_empty, "participant {id}");
        };
        join(&mut room, 1);
        join(&mut room, 2);
        // The creator leaves before creating: creation passes on.
        let out = room.left(1, &signer);
        assert!(matches!(
            out.as_slice(),
            [Out::To(2, ServerMessage::CreateGroup { .. })]
        ));
        let mut creator = conclave_e2ee::Member::new("Bob", b"r", None).expect("member");
        creator
            .create_group(std::slice::from_ref(&signer.external_sender), 0)
            .expect("group");
        let info = B64.encode(creator.group_info().expect("group info"));
        room.group_created(2, "r", &info, &signer)
            .expect("group accepted");
        join(&mut room, 3);
        // The only member leaves: the group is gone, and 3 is asked to create one.
        let out = room.left(2, &signer);
        assert!(matches!(
            out.as_slice(),
            [Out::To(3, ServerMessage::CreateGroup { .. })]
        ));
        join(&mut room, 4);
        room.left(3, &signer);
        room.left(4, &signer);
        join(&mut room, 5);
    }
}
