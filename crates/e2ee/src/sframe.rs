//! SFrame (RFC 9605) media frame protection with MLS-derived keys (§5.2).
//!
//! This module exists so the media path (a browser Worker behind Encoded
//! Transforms, or a native agent) can protect every audio/video frame with a
//! per-epoch key taken from the MLS group, without knowing anything about MLS:
//! the caller pushes one base key per epoch (`MLS-Exporter("SFrame 1.0 Base
//! Key", "", 16)`) into an [`SframeContext`] and then encrypts/decrypts frames.
//!
//! Choices (all fixed for the whole session):
//! * Cipher suite 0x0004 `AES_128_GCM_SHA256_128` (Nk = 16, Nn = 12, Nt = 16).
//! * KID = `(sender_leaf_index << EPOCH_BITS) | (epoch mod 2^EPOCH_BITS)` with
//!   [`EPOCH_BITS`] = 4 and [`LEAF_BITS`] = 16 (no context bits), so a KID
//!   always fits in 20 bits and names exactly one (sender, epoch) pair while
//!   at most 16 epochs are alive — we keep at most a few.
//! * Per-KID derived AES keys (expanded key schedule) and salts are cached, so
//!   per-frame work is: header encode/parse, one copy of the payload into the
//!   caller's reused output buffer, AES-GCM in place. No allocation once the
//!   output buffer has grown to the frame size.
//! * A per-KID replay window (highest counter + 1024-bit bitmap) that only
//!   advances after a frame authenticates. A sender's audio, camera and
//!   screen share one counter, so the window must span all three: 1024
//!   frames is over 8 s of a 30 fps camera with 50 fps audio, room for a
//!   retransmitted video frame. Receive state for a KID is created only once
//!   a frame with it authenticates, so forged KIDs cost no memory.
//! * When a newer epoch is installed, the previous epochs stay usable for
//!   decryption for `retention_ms` (default 5 s, time passed in by the
//!   caller), then are dropped; an epoch is also dropped at once when a newer
//!   epoch with the same low [`EPOCH_BITS`] arrives (RFC 9605 §5.2).
//!
//! Frame layout produced here: `clear_prefix || sframe_header || ciphertext ||
//! tag`, with AAD = `sframe_header || clear_prefix` (the clear prefix is the
//! RFC's "metadata", so it is authenticated). See [`Codec`] for which bytes
//! stay clear and why.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
use std::collections::HashMap;

use crate::error::{Error, Result};

/// RFC 9605 cipher suite identifier used throughout: AES_128_GCM_SHA256_128.
pub const CIPHER_SUITE: u16 = 0x0004;
/// Key length (Nk) for suite 0x0004.
pub const KEY_LEN: usize = 16;
/// Nonce length (Nn) for suite 0x0004.
pub const NONCE_LEN: usize = 12;
/// Tag length (Nt) for suite 0x0004.
pub const TAG_LEN: usize = 16;
/// Number of low epoch bits in a KID (E in RFC 9605 §5.2).
pub const EPOCH_BITS: u32 = 4;
/// Number of bits reserved for the MLS leaf index in a KID (S in §5.2).
pub const LEAF_BITS: u32 = 16;
/// MLS exporter label for the per-epoch SFrame base key (RFC 9605 §5.2).
pub const MLS_EXPORTER_LABEL: &str = "SFrame 1.0 Base Key";
/// Default time previous-epoch keys remain usable after a new epoch.
pub const DEFAULT_RETENTION_MS: u64 = 5_000;
/// Largest SFrame header: config byte + 8-byte KID + 8-byte CTR.
pub const MAX_HEADER_LEN: usize = 17;
/// Largest clear prefix used by any [`Codec`].
pub const MAX_CLEAR_PREFIX: usize = 10;
/// Replay window width in frames (per KID).
pub const REPLAY_WINDOW: u64 = 1024;

const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

/// Media codec of a frame; decides how many leading bytes stay in clear.
///
/// Clear bytes are only those the browser's RTP packetizer/depacketizer or
/// the SFU must read; they are authenticated as SFrame metadata (AAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Opus audio: fully encrypted. Nothing in an Opus frame is needed by the
    /// packetizer (RFC 7587 payload is opaque) or the SFU (it uses the RTP
    /// header and, if negotiated, the audio-level header extension).
    Opus,
    /// VP8 video (RFC 6386 §9.1 frame tag, RFC 7741 packetization).
    ///
    /// Byte 0 stays clear on every frame: it holds the P bit (inverse key
    /// frame flag), version and show_frame bit; Chromium's VP8 packetizer and
    /// the SFU read the key-frame flag for keyframe detection/layer switching,
    /// and our own receiver reads it to know the prefix length.
    /// On key frames bytes 1..10 also stay clear: bytes 1-2 finish the 19-bit
    /// first-partition size, bytes 3-5 are the start code `9d 01 2a`, bytes
    /// 6-9 the 14-bit width/height with scaling bits. The depacketizer and
    /// decoder setup validate these before the decoder runs (same choice as
    /// Discord DAVE: 10 bytes on key frames, 1 byte otherwise).
    Vp8,
    /// Anything else (data, VP9, AV1, screen share): fully encrypted.
    Opaque,
}

impl Codec {
    /// Number of clear leading bytes of an *unencrypted* frame.
    pub fn clear_prefix_len(self, frame: &[u8]) -> Result<usize> {
        match self {
            Codec::Opus | Codec::Opaque => Ok(0),
            Codec::Vp8 => {
                let first = *frame.first().ok_or(Error::FrameTooShort)?;
                // P bit (bit 0) == 0 means key frame.
                let n = if first & 0x01 == 0 { 10 } else { 1 };
                if frame.len() < n {
                    return Err(Error::FrameTooShort);
                }
                Ok(n)
            }
        }
    }

    /// Stable numeric code for bindings (0 = Opus, 1 = VP8, 2 = opaque).
    pub fn from_u8(v: u8) -> Result<Codec> {
        match v {
            0 => Ok(Codec::Opus),
            1 => Ok(Codec::Vp8),
            2 => Ok(Codec::Opaque),
            _ => Err(Error::InvalidInput("unknown codec")),
        }
    }
}

/// Encode an SFrame header (RFC 9605 §4.3) into `out`; returns its length.
pub fn encode_header(kid: u64, ctr: u64, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    fn min_len(v: u64) -> usize {
        (8 - (v.leading_zeros() as usize / 8)).max(1)
    }
    let mut cfg = 0u8;
    let mut pos = 1;
    if kid < 8 {
        cfg |= (kid as u8) << 4;
    } else {
        let n = min_len(kid);
        cfg |= 0x80 | (((n - 1) as u8) << 4);
        out[pos..pos + n].copy_from_slice(&kid.to_be_bytes()[8 - n..]);
        pos += n;
    }
    if ctr < 8 {
        cfg |= ctr as u8;
    } else {
        let n = min_len(ctr);
        cfg |= 0x08 | ((n - 1) as u8);
        out[pos..pos + n].copy_from_slice(&ctr.to_be_bytes()[8 - n..]);
        pos += n;
    }
    out[0] = cfg;
    pos
}

/// Parse an SFrame header; returns `(kid, ctr, header_len)`.
pub fn decode_header(buf: &[u8]) -> Result<(u64, u64, usize)> {
    let cfg = *buf.first().ok_or(Error::MalformedFrame)?;
    let mut pos = 1;
    let mut read = |flag: bool, low: u8| -> Result<u64> {
        if !flag {
            return Ok(u64::from(low));
        }
        let n = usize::from(low) + 1;
        let bytes = buf.get(pos..pos + n).ok_or(Error::MalformedFrame)?;
        pos += n;
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    let kid = read(cfg & 0x80 != 0, (cfg >> 4) & 0x07)?;
    let ctr = read(cfg & 0x08 != 0, cfg & 0x07)?;
    Ok((kid, ctr, pos))
}

/// Build the §5.2 KID for a sender leaf index and epoch.
pub fn kid_for(leaf_index: u32, epoch: u64) -> Result<u64> {
    if u64::from(leaf_index) >= (1u64 << LEAF_BITS) {
        return Err(Error::InvalidInput("leaf index exceeds KID leaf bits"));
    }
    Ok((u64::from(leaf_index) << EPOCH_BITS) | (epoch & EPOCH_MASK))
}

/// Split a KID into `(leaf_index, epoch_low_bits)`.
pub fn split_kid(kid: u64) -> Result<(u32, u64)> {
    let leaf = kid >> EPOCH_BITS;
    if leaf >= (1u64 << LEAF_BITS) {
        return Err(Error::UnknownKey);
    }
    Ok((leaf as u32, kid & EPOCH_MASK))
}

/// A derived SFrame key for one KID: the expanded AES key schedule and salt.
///
/// Deriving this is the expensive part (HKDF + AES key expansion); contexts
/// cache one per KID so frames never repeat it.
pub struct SframeKey {
    kid: u64,
    cipher: Aes128Gcm,
    salt: [u8; NONCE_LEN],
}

impl SframeKey {
    /// Derive `sframe_key`/`sframe_salt` for `kid` from a base key (RFC 9605 §4.4.2).
    pub fn derive(base_key: &[u8], kid: u64) -> Result<Self> {
        let (key, salt) = derive_key_and_salt(base_key, kid)?;
        let cipher = Aes128Gcm::new_from_slice(&key).map_err(|_| Error::Crypto)?;
        Ok(SframeKey { kid, cipher, salt })
    }

    /// The KID this key belongs to.
    pub fn kid(&self) -> u64 {
        self.kid
    }

    fn nonce(&self, ctr: u64) -> [u8; NONCE_LEN] {
        let mut n = self.salt;
        for (i, b) in ctr.to_be_bytes().iter().enumerate() {
            n[NONCE_LEN - 8 + i] ^= b;
        }
        n
    }

    /// Encrypt `payload` with counter `ctr` and `metadata` (clear prefix).
    ///
    /// Writes `metadata || header || ciphertext || tag` into `out` (cleared
    /// first, capacity reused). The payload is copied exactly once.
    pub fn encrypt_into(
        &self,
        ctr: u64,
        metadata: &[u8],
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if metadata.len() > MAX_CLEAR_PREFIX * 2 {
            return Err(Error::InvalidInput("metadata too long"));
        }
        let mut hdr = [0u8; MAX_HEADER_LEN];
        let hlen = encode_header(self.kid, ctr, &mut hdr);
        let mut aad = [0u8; MAX_HEADER_LEN + 2 * MAX_CLEAR_PREFIX];
        aad[..hlen].copy_from_slice(&hdr[..hlen]);
        aad[hlen..hlen + metadata.len()].copy_from_slice(metadata);
        let aad = &aad[..hlen + metadata.len()];

        out.clear();
        out.reserve(metadata.len() + hlen + payload.len() + TAG_LEN);
        out.extend_from_slice(metadata);
        out.extend_from_slice(&hdr[..hlen]);
        let start = out.len();
        out.extend_from_slice(payload);
        let nonce = self.nonce(ctr);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[start..])
            .map_err(|_| Error::Crypto)?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Decrypt a body (`ciphertext || tag`) given the parsed header bytes and
    /// metadata; writes `metadata || plaintext` into `out`.
    fn decrypt_into(
        &self,
        ctr: u64,
        header: &[u8],
        metadata: &[u8],
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if body.len() < TAG_LEN || metadata.len() > MAX_CLEAR_PREFIX * 2 {
            return Err(Error::MalformedFrame);
        }
        let mut aad = [0u8; MAX_HEADER_LEN + 2 * MAX_CLEAR_PREFIX];
        aad[..header.len()].copy_from_slice(header);
        aad[header.len()..header.len() + metadata.len()].copy_from_slice(metadata);
        let aad = &aad[..header.len() + metadata.len()];
        let (ct, tag) = body.split_at(body.len() - TAG_LEN);
        out.clear();
        out.reserve(metadata.len() + ct.len());
        out.extend_from_slice(metadata);
        let start = out.len();
        out.extend_from_slice(ct);
        let nonce = self.nonce(ctr);
        let res = self.cipher.decrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            aad,
            &mut out[start..],
            Tag::from_slice(tag),
        );
        if res.is_err() {
            out.clear();
            return Err(Error::AuthenticationFailed);
        }
        Ok(())
    }

    /// Decrypt a full SFrame ciphertext `header || ciphertext || tag` with
    /// the given metadata (used for the RFC test vectors). Returns the CTR.
    pub fn decrypt_raw(&self, metadata: &[u8], frame: &[u8], out: &mut Vec<u8>) -> Result<u64> {
        let (kid, ctr, hlen) = decode_header(frame)?;
        if kid != self.kid {
            return Err(Error::UnknownKey);
        }
        self.decrypt_into(ctr, &frame[..hlen], metadata, &frame[hlen..], out)?;
        // strip metadata, the raw API returns plaintext only
        out.drain(..metadata.len());
        Ok(ctr)
    }
}

/// RFC 9605 §4.4.2 key schedule: returns `(sframe_key, sframe_salt)`.
pub fn derive_key_and_salt(base_key: &[u8], kid: u64) -> Result<([u8; KEY_LEN], [u8; NONCE_LEN])> {
    if base_key.is_empty() {
        return Err(Error::InvalidInput("empty base key"));
    }
    let hk = Hkdf::<Sha256>::new(None, base_key);
    let mut label = [0u8; 33];
    let mut key = [0u8; KEY_LEN];
    let mut salt = [0u8; NONCE_LEN];
    let key_label = b"SFrame 1.0 Secret key ";
    let n = key_label.len();
    label[..n].copy_from_slice(key_label);
    label[n..n + 8].copy_from_slice(&kid.to_be_bytes());
    label[n + 8..n + 10].copy_from_slice(&CIPHER_SUITE.to_be_bytes());
    hk.expand(&label[..n + 10], &mut key)
        .map_err(|_| Error::Crypto)?;
    let salt_label = b"SFrame 1.0 Secret salt ";
    let n = salt_label.len();
    label[..n].copy_from_slice(salt_label);
    label[n..n + 8].copy_from_slice(&kid.to_be_bytes());
    label[n + 8..n + 10].copy_from_slice(&CIPHER_SUITE.to_be_bytes());
    hk.expand(&label[..n + 10], &mut salt)
        .map_err(|_| Error::Crypto)?;
    Ok((key, salt))
}

/// Sliding replay window for one KID.
#[derive(Debug, Default, Clone)]
struct ReplayWindow {
    /// Highest counter accepted so far, if any.
    highest: Option<u64>,
    /// Bit i (word i / 64, bit i % 64) set = counter `highest - i` was seen.
    bits: [u64; WINDOW_WORDS],
}

const WINDOW_WORDS: usize = (REPLAY_WINDOW / 64) as usize;

impl ReplayWindow {
    fn seen(&self, age: u64) -> bool {
        self.bits[(age / 64) as usize] & (1u64 << (age % 64)) != 0
    }

    fn check(&self, ctr: u64) -> Result<()> {
        match self.highest {
            None => Ok(()),
            Some(h) if ctr > h => Ok(()),
            Some(h) => {
                let age = h - ctr;
                if age >= REPLAY_WINDOW || self.seen(age) {
                    Err(Error::Replay)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Moves every bit `shift` places towards older ages.
    fn shift(&mut self, shift: u64) {
        if shift >= REPLAY_WINDOW {
            self.bits = [0; WINDOW_WORDS];
            return;
        }
        let (words, bits) = ((shift / 64) as usize, (shift % 64) as u32);
        for i in (0..WINDOW_WORDS).rev() {
            let lo = i.checked_sub(words).map_or(0, |j| self.bits[j]);
            let carry = match i.checked_sub(words + 1) {
                Some(j) if bits > 0 => self.bits[j] >> (64 - bits),
                _ => 0,
            };
            self.bits[i] = if bits > 0 { (lo << bits) | carry } else { lo };
        }
    }

    fn accept(&mut self, ctr: u64) {
        match self.highest {
            None => {
                self.highest = Some(ctr);
                self.bits = [0; WINDOW_WORDS];
                self.bits[0] = 1;
            }
            Some(h) if ctr > h => {
                self.shift(ctr - h);
                self.bits[0] |= 1;
                self.highest = Some(ctr);
            }
            Some(h) => {
                let age = h - ctr;
                if age < REPLAY_WINDOW {
                    self.bits[(age / 64) as usize] |= 1u64 << (age % 64);
                }
            }
        }
    }
}

struct ReceiveState {
    key: SframeKey,
    replay: ReplayWindow,
}

struct EpochKeys {
    epoch: u64,
    base_key: [u8; KEY_LEN],
    /// `None` while current; set when a newer epoch replaces it.
    expires_at_ms: Option<u64>,
    receivers: HashMap<u32, ReceiveState>,
}

/// Information about a decrypted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// MLS leaf index of the sender (from the KID; SFrame does not
    /// authenticate senders against each other — any member could forge it).
    pub sender_leaf: u32,
    /// Full epoch number of the key used.
    pub epoch: u64,
    /// SFrame counter of the frame.
    pub counter: u64,
}

/// SFrame state of one participant: own sending key and counter, and cached
/// receive keys per (epoch, sender) with replay windows.
pub struct SframeContext {
    own_leaf: Option<u32>,
    epochs: Vec<EpochKeys>,
    sender: Option<(u64, SframeKey)>,
    counter: u64,
    retention_ms: u64,
}

impl SframeContext {
    /// New context. `own_leaf` is our MLS leaf index (needed to send).
    pub fn new(own_leaf: Option<u32>) -> Self {
        SframeContext {
            own_leaf,
            epochs: Vec::new(),
            sender: None,
            counter: 0,
            retention_ms: DEFAULT_RETENTION_MS,
        }
    }

    /// Convenience for tests/interop: a context with one epoch installed.
    pub fn from_base_key(base_key: &[u8], epoch: u64, own_leaf: u32) -> Result<Self> {
        let mut c = SframeContext::new(Some(own_leaf));
        c.set_epoch_key(epoch, base_key, 0)?;
        Ok(c)
    }

    /// Change how long previous epochs stay usable after a newer one.
    pub fn set_retention_ms(&mut self, ms: u64) {
        self.retention_ms = ms;
    }

    /// Set (or change, after a rejoin) our own leaf index.
    pub fn set_own_leaf(&mut self, leaf: Option<u32>) {
        if self.own_leaf != leaf {
            self.own_leaf = leaf;
            self.sender = None;
        }
    }

    /// Current (newest) epoch, if any.
    pub fn current_epoch(&self) -> Option<u64> {
        self.epochs
            .iter()
            .filter(|e| e.expires_at_ms.is_none())
            .map(|e| e.epoch)
            .max()
    }

    /// Install the base key of `epoch` (16 bytes from the MLS exporter).
    ///
    /// If it is newer than the current epoch it becomes the sending epoch and
    /// older epochs expire at `now_ms + retention`. Installing an epoch older
    /// than the current one is refused (keys only move forward).
    pub fn set_epoch_key(&mut self, epoch: u64, base_key: &[u8], now_ms: u64) -> Result<()> {
        let bk: [u8; KEY_LEN] = base_key
            .try_into()
            .map_err(|_| Error::InvalidInput("base key must be 16 bytes"))?;
        if let Some(cur) = self.current_epoch() {
            if epoch < cur {
                return Err(Error::InvalidInput("epoch older than current"));
            }
            if epoch == cur {
                // Re-installing the same epoch: only accept identical key.
                return if self
                    .epochs
                    .iter()
                    .any(|e| e.epoch == epoch && e.base_key == bk)
                {
                    Ok(())
                } else {
                    Err(Error::InvalidInput("different key for current epoch"))
                };
            }
        }
        let expiry = now_ms.saturating_add(self.retention_ms);
        for e in &mut self.epochs {
            if e.expires_at_ms.is_none() {
                e.expires_at_ms = Some(expiry);
            }
        }
        // RFC 9605 §5.2: a new epoch replaces any epoch sharing its low bits.
        self.epochs
            .retain(|e| e.epoch & EPOCH_MASK != epoch & EPOCH_MASK);
        self.epochs.push(EpochKeys {
            epoch,
            base_key: bk,
            expires_at_ms: None,
            receivers: HashMap::new(),
        });
        self.sender = None;
        self.counter = 0;
        Ok(())
    }

    /// Drop every key (e.g. after being removed from the group).
    pub fn clear(&mut self) {
        self.epochs.clear();
        self.sender = None;
        self.counter = 0;
    }

    /// Forget epochs whose retention ended.
    pub fn expire(&mut self, now_ms: u64) {
        self.epochs
            .retain(|e| e.expires_at_ms.is_none_or(|t| now_ms < t));
    }

    /// Encrypt one frame for sending under the current epoch.
    ///
    /// `out` is cleared and refilled (reuse it across frames to avoid
    /// allocation). Output: `clear_prefix || header || ciphertext || tag`.
    pub fn encrypt(&mut self, codec: Codec, frame: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let prefix = codec.clear_prefix_len(frame)?;
        if self.sender.is_none() {
            let leaf = self.own_leaf.ok_or(Error::NotInGroup)?;
            let cur = self.current_epoch().ok_or(Error::NoKey)?;
            let e = self
                .epochs
                .iter()
                .find(|e| e.epoch == cur)
                .ok_or(Error::NoKey)?;
            let kid = kid_for(leaf, cur)?;
            self.sender = Some((cur, SframeKey::derive(&e.base_key, kid)?));
            self.counter = 0;
        }
        let Some((_, key)) = &self.sender else {
            return Err(Error::NoKey);
        };
        let ctr = self.counter;
        self.counter = ctr.checked_add(1).ok_or(Error::CounterExhausted)?;
        let (clear, payload) = frame.split_at(prefix);
        key.encrypt_into(ctr, clear, payload, out)
    }

    /// Decrypt one received frame. `out` receives `clear_prefix || plaintext`
    /// (i.e. the original frame). Expired epochs are dropped first.
    pub fn decrypt(
        &mut self,
        codec: Codec,
        frame: &[u8],
        out: &mut Vec<u8>,
        now_ms: u64,
    ) -> Result<FrameInfo> {
        self.expire(now_ms);
        let prefix = codec.clear_prefix_len(frame)?;
        let (clear, rest) = frame.split_at(prefix);
        let (kid, ctr, hlen) = decode_header(rest)?;
        let (leaf, epoch_low) = split_kid(kid)?;
        let e = self
            .epochs
            .iter_mut()
            .find(|e| e.epoch & EPOCH_MASK == epoch_low)
            .ok_or(Error::UnknownKey)?;
        let epoch = e.epoch;
        match e.receivers.get_mut(&leaf) {
            Some(state) => {
                state.replay.check(ctr)?;
                state
                    .key
                    .decrypt_into(ctr, &rest[..hlen], clear, &rest[hlen..], out)?;
                state.replay.accept(ctr);
            }
            None => {
                // Keep state for this sender only once a frame authenticates.
                let key = SframeKey::derive(&e.base_key, kid)?;
                key.decrypt_into(ctr, &rest[..hlen], clear, &rest[hlen..], out)?;
                let mut replay = ReplayWindow::default();
                replay.accept(ctr);
                e.receivers.insert(leaf, ReceiveState { key, replay });
            }
        }
        Ok(FrameInfo {
            sender_leaf: leaf,
            epoch,
            counter: ctr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window_accepts_reordered_and_rejects_duplicates() {
        let mut w = ReplayWindow::default();
        for c in [5u64, 3, 7, 6, 4] {
            assert!(w.check(c).is_ok());
            w.accept(c);
        }
        for c in [3u64, 4, 5, 6, 7] {
            assert!(w.check(c).is_err());
        }
        w.accept(5000);
        assert!(w.check(7).is_err(), "too old");
        assert!(w.check(4999).is_ok());
    }

    #[test]
    fn replay_window_spans_a_thousand_frames_across_word_boundaries() {
        let mut w = ReplayWindow::default();
        // Every third counter seen, up to 3000; the others stay acceptable
        // while inside the window.
        for c in (0..3000u64).step_by(3) {
            w.accept(c);
        }
        let h = 2997;
        for age in 0..REPLAY_WINDOW {
            let c = h - age;
            assert_eq!(w.check(c).is_err(), c % 3 == 0, "counter {c}");
        }
        assert!(w.check(h - REPLAY_WINDOW).is_err(), "outside the window");
        // A retransmission 1000 frames late is still accepted once.
        let late = h - 998; // 1999: not a multiple of 3
        assert!(w.check(late).is_ok());
        w.accept(late);
        assert!(w.check(late).is_err());
        // Shifts by amounts that cross word boundaries keep old bits.
        w.accept(h + 65);
        assert!(w.check(h).is_err());
        assert!(w.check(h + 1).is_ok());
    }

    #[test]
    fn frames_that_fail_authentication_leave_no_receive_state() {
        let mut ctx = SframeContext::from_base_key(&[1u8; 16], 1, 0).expect("ctx");
        let mut out = Vec::new();
        for leaf in 1..200u64 {
            // A header with a KID of this leaf at epoch 1 and garbage after it.
            let mut h = [0u8; MAX_HEADER_LEN];
            let n = encode_header((leaf << 4) | 1, 5, &mut h);
            let mut frame = h[..n].to_vec();
            frame.extend_from_slice(&[0xAA; 30]);
            assert!(ctx.decrypt(Codec::Opus, &frame, &mut out, 0).is_err());
        }
        assert_eq!(ctx.epochs[0].receivers.len(), 0);
        let mut sender = SframeContext::from_base_key(&[1u8; 16], 1, 3).expect("ctx");
        let mut sealed = Vec::new();
        sender
            .encrypt(Codec::Opus, b"hello", &mut sealed)
            .expect("encrypt");
        ctx.decrypt(Codec::Opus, &sealed, &mut out, 0)
            .expect("decrypt");
        assert_eq!(ctx.epochs[0].receivers.len(), 1);
    }

    #[test]
    fn header_roundtrip_for_edge_values() {
        for &(k, c) in &[(0u64, 0u64), (7, 7), (8, 8), (u64::MAX, 1), (300, u64::MAX)] {
            let mut h = [0u8; MAX_HEADER_LEN];
            let n = encode_header(k, c, &mut h);
            assert_eq!(decode_header(&h[..n]).ok(), Some((k, c, n)));
        }
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut ctx = SframeContext::from_base_key(&[1u8; 16], 1, 0).expect("ctx");
        let mut out = Vec::new();
        for f in [&[][..], &[0x98][..], &[0x10, 1, 2][..]] {
            assert!(ctx.decrypt(Codec::Opus, f, &mut out, 0).is_err());
            assert!(ctx.decrypt(Codec::Vp8, f, &mut out, 0).is_err());
        }
    }
}
