//! Invite-secret gate for membership.
//!
//! A meeting has an invite secret that travels only in invite links (URL
//! fragment), never to the server. A joiner proves it holds the secret with
//! `proof = HMAC-SHA256(mac_key, "conclave join v1" || key_package_bytes)`
//! where `mac_key = HKDF-SHA256(salt = "conclave invite v1", ikm = secret,
//! info = "conclave invite mac key" || room_id)`. The MAC covers the whole
//! serialized KeyPackage (identity, signature key, HPKE init key, signature),
//! so the server can neither forge a proof for its own KeyPackage nor move a
//! proof to another one; replaying a genuine request only re-adds the genuine
//! joiner (who alone holds its private keys).
//!
//! The committer copies the proof into the commit's MLS authenticated data
//! ([`AddAuthorizations`]), so every member holding the secret re-verifies
//! every Add; an Add without a valid proof must instead be marked "admitted"
//! by the committer (a human decision after a knock), which all members see.
//!
//! Wire format of a join request (opaque to the server except the KeyPackage,
//! which is public anyway): `"CJR1" || flag(1) || u32 kp_len || kp || [mac(32)]`.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// Magic prefix of a join request.
pub const JOIN_REQUEST_MAGIC: &[u8; 4] = b"CJR1";
/// Magic prefix of the commit authenticated data listing Add authorizations.
pub const ADD_AUTH_MAGIC: &[u8; 4] = b"CAA1";
/// Proof length.
pub const PROOF_LEN: usize = 32;
/// MLS extension type (private-use range, RFC 9420 §17.3) of the group
/// context extension that carries [`InviteKey::commitment`]: the creator
/// binds the invite key into the group, so a member admitted by knock can
/// tell the real key from a wrong one a member shares.
pub const INVITE_COMMITMENT_EXTENSION: u16 = 0xF1C0;

/// Key derived from the invite secret for one room.
#[derive(Clone)]
pub struct InviteKey([u8; 32]);

impl std::fmt::Debug for InviteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InviteKey(<redacted>)")
    }
}

impl InviteKey {
    /// Derive from the raw invite secret and room id.
    pub fn derive(invite_secret: &[u8], room_id: &[u8]) -> Result<Self> {
        if invite_secret.len() < 16 {
            return Err(Error::InvalidInput(
                "invite secret must be at least 16 bytes",
            ));
        }
        let hk = Hkdf::<Sha256>::new(Some(b"conclave invite v1"), invite_secret);
        let mut info = Vec::with_capacity(32 + room_id.len());
        info.extend_from_slice(b"conclave invite mac key");
        info.extend_from_slice(room_id);
        let mut k = [0u8; 32];
        hk.expand(&info, &mut k).map_err(|_| Error::Crypto)?;
        Ok(InviteKey(k))
    }

    fn mac(&self) -> Result<Hmac<Sha256>> {
        let mut m =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).map_err(|_| Error::Crypto)?;
        m.update(b"conclave join v1");
        Ok(m)
    }

    /// Proof over serialized KeyPackage bytes.
    pub fn prove(&self, key_package: &[u8]) -> Result<[u8; PROOF_LEN]> {
        let mut m = self.mac()?;
        m.update(key_package);
        Ok(m.finalize().into_bytes().into())
    }

    /// The group's proof that its members hold the invite secret, bound to
    /// one group and epoch through the epoch authenticator (a value only
    /// members of that epoch know, distinct for every group and epoch): a
    /// server that built its own group can neither compute it nor replay
    /// one from the real group.
    pub fn group_proof(
        &self,
        group_id: &[u8],
        epoch: u64,
        authenticator: &[u8],
    ) -> Result<[u8; PROOF_LEN]> {
        let m = self.group_mac(group_id, epoch, authenticator)?;
        Ok(m.finalize().into_bytes().into())
    }

    /// Constant-time check of a [`InviteKey::group_proof`].
    pub fn verify_group_proof(
        &self,
        group_id: &[u8],
        epoch: u64,
        authenticator: &[u8],
        proof: &[u8],
    ) -> bool {
        self.group_mac(group_id, epoch, authenticator)
            .is_ok_and(|m| m.verify_slice(proof).is_ok())
    }

    fn group_mac(&self, group_id: &[u8], epoch: u64, authenticator: &[u8]) -> Result<Hmac<Sha256>> {
        let mut m =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).map_err(|_| Error::Crypto)?;
        m.update(b"conclave group v1");
        m.update(&(group_id.len() as u32).to_be_bytes());
        m.update(group_id);
        m.update(&epoch.to_be_bytes());
        m.update(authenticator);
        Ok(m)
    }

    /// `HMAC(invite key, "conclave invite commitment v1" || group id)`:
    /// what the creator puts into the group context
    /// ([`INVITE_COMMITMENT_EXTENSION`]). It reveals no more about the key
    /// than a join proof does (both are MACs under it).
    pub fn commitment(&self, group_id: &[u8]) -> Result<[u8; PROOF_LEN]> {
        Ok(self
            .commitment_mac(group_id)?
            .finalize()
            .into_bytes()
            .into())
    }

    /// Constant-time check that `commitment` is this key's for `group_id`.
    pub fn verify_commitment(&self, group_id: &[u8], commitment: &[u8]) -> bool {
        self.commitment_mac(group_id)
            .is_ok_and(|m| m.verify_slice(commitment).is_ok())
    }

    fn commitment_mac(&self, group_id: &[u8]) -> Result<Hmac<Sha256>> {
        let mut m =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).map_err(|_| Error::Crypto)?;
        m.update(b"conclave invite commitment v1");
        m.update(&(group_id.len() as u32).to_be_bytes());
        m.update(group_id);
        Ok(m)
    }

    /// The derived key's bytes, to share with a member admitted by knock
    /// (inside the encrypted group only), so it can verify joiners and
    /// prove the group to them.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// A key received from the group ([`InviteKey::to_bytes`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        InviteKey(bytes)
    }

    /// Constant-time verification of a proof.
    pub fn verify(&self, key_package: &[u8], proof: &[u8]) -> bool {
        match self.mac() {
            Ok(mut m) => {
                m.update(key_package);
                m.verify_slice(proof).is_ok()
            }
            Err(_) => false,
        }
    }
}

/// A parsed join request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// TLS-serialized MLS KeyPackage.
    pub key_package: Vec<u8>,
    /// Invite proof, absent for a knock.
    pub proof: Option<[u8; PROOF_LEN]>,
}

impl JoinRequest {
    /// Serialize.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9 + self.key_package.len() + PROOF_LEN);
        v.extend_from_slice(JOIN_REQUEST_MAGIC);
        v.push(u8::from(self.proof.is_some()));
        v.extend_from_slice(&(self.key_package.len() as u32).to_be_bytes());
        v.extend_from_slice(&self.key_package);
        if let Some(p) = &self.proof {
            v.extend_from_slice(p);
        }
        v
    }

    /// True if `bytes` looks like a join request (magic prefix).
    pub fn is_join_request(bytes: &[u8]) -> bool {
        bytes.starts_with(JOIN_REQUEST_MAGIC)
    }

    /// Parse.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let bad = || Error::Malformed("join request".into());
        if !Self::is_join_request(b) || b.len() < 9 {
            return Err(bad());
        }
        let flag = b[4];
        let len = u32::from_be_bytes([b[5], b[6], b[7], b[8]]) as usize;
        let kp = b
            .get(9..9usize.checked_add(len).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let rest = &b[9 + len..];
        let proof = match (flag, rest.len()) {
            (0, 0) => None,
            (1, PROOF_LEN) => {
                let mut p = [0u8; PROOF_LEN];
                p.copy_from_slice(rest);
                Some(p)
            }
            _ => return Err(bad()),
        };
        Ok(JoinRequest {
            key_package: kp.to_vec(),
            proof,
        })
    }
}

/// Why an Add in a commit is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddAuthorization {
    /// The joiner's invite proof (re-verifiable by members with the secret).
    Proof([u8; PROOF_LEN]),
    /// The committer admitted the joiner after a knock (human decision).
    Admitted,
}

/// List of `(KeyPackageRef, authorization)` carried in a commit's MLS
/// authenticated data: `"CAA1" || u16 n || n * (u8 ref_len || ref || u8 kind || [proof])`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddAuthorizations(pub Vec<(Vec<u8>, AddAuthorization)>);

impl AddAuthorizations {
    /// Serialize.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(ADD_AUTH_MAGIC);
        v.extend_from_slice(&(self.0.len() as u16).to_be_bytes());
        for (r, a) in &self.0 {
            v.push(r.len() as u8);
            v.extend_from_slice(r);
            match a {
                AddAuthorization::Proof(p) => {
                    v.push(0);
                    v.extend_from_slice(p);
                }
                AddAuthorization::Admitted => v.push(1),
            }
        }
        v
    }

    /// Parse (empty input = no authorizations).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let bad = || Error::Malformed("add authorizations".into());
        if b.is_empty() {
            return Ok(Self::default());
        }
        if !b.starts_with(ADD_AUTH_MAGIC) || b.len() < 6 {
            return Err(bad());
        }
        let n = u16::from_be_bytes([b[4], b[5]]) as usize;
        let mut pos = 6;
        let mut out = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let rl = *b.get(pos).ok_or_else(bad)? as usize;
            let r = b.get(pos + 1..pos + 1 + rl).ok_or_else(bad)?.to_vec();
            pos += 1 + rl;
            let kind = *b.get(pos).ok_or_else(bad)?;
            pos += 1;
            let a = match kind {
                0 => {
                    let p = b.get(pos..pos + PROOF_LEN).ok_or_else(bad)?;
                    pos += PROOF_LEN;
                    let mut arr = [0u8; PROOF_LEN];
                    arr.copy_from_slice(p);
                    AddAuthorization::Proof(arr)
                }
                1 => AddAuthorization::Admitted,
                _ => return Err(bad()),
            };
            out.push((r, a));
        }
        if pos != b.len() {
            return Err(bad());
        }
        Ok(AddAuthorizations(out))
    }

    /// Look up the authorization for a KeyPackage ref.
    pub fn get(&self, kp_ref: &[u8]) -> Option<&AddAuthorization> {
        self.0.iter().find(|(r, _)| r == kp_ref).map(|(_, a)| a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_is_bound_to_secret_room_and_key_package() {
        let k = InviteKey::derive(&[7u8; 32], b"room").expect("key");
        let p = k.prove(b"kp").expect("prove");
        assert!(k.verify(b"kp", &p));
        assert!(!k.verify(b"kp2", &p));
        let other_room = InviteKey::derive(&[7u8; 32], b"room2").expect("key");
        assert!(!other_room.verify(b"kp", &p));
    }

    #[test]
    fn group_proof_is_bound_to_group_epoch_and_authenticator() {
        let k = InviteKey::derive(&[7u8; 32], b"room").expect("key");
        let p = k.group_proof(b"room", 3, &[1; 32]).expect("proof");
        assert!(k.verify_group_proof(b"room", 3, &[1; 32], &p));
        assert!(!k.verify_group_proof(b"room", 4, &[1; 32], &p));
        assert!(!k.verify_group_proof(b"room", 3, &[2; 32], &p));
        assert!(!k.verify_group_proof(b"roo", 3, &[1; 32], &p));
        let other = InviteKey::derive(&[8u8; 32], b"room").expect("key");
        assert!(!other.verify_group_proof(b"room", 3, &[1; 32], &p));
        // A join proof is never a group proof (different label).
        assert!(!k.verify_group_proof(b"room", 3, &[1; 32], &k.prove(b"kp").expect("p")));
    }

    #[test]
    fn encodings_roundtrip_and_reject_garbage() {
        let jr = JoinRequest {
            key_package: vec![1, 2, 3],
            proof: Some([9; 32]),
        };
        assert_eq!(JoinRequest::from_bytes(&jr.to_bytes()), Ok(jr));
        let aa = AddAuthorizations(vec![(vec![1; 32], AddAuthorization::Admitted)]);
        assert_eq!(AddAuthorizations::from_bytes(&aa.to_bytes()), Ok(aa));
        for g in [&b"CJR1\x01\xff\xff\xff\xff"[..], b"CAA1\x00\x05", b"CJR"] {
            assert!(JoinRequest::from_bytes(g).is_err());
            assert!(AddAuthorizations::from_bytes(g).is_err());
        }
    }
}
