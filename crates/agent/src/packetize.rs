//! Frames to RTP payloads and back, for VP8 (RFC 7741) and Opus (one frame
//! per packet, RFC 7587).
//!
//! Kept apart from `media` because SFrame sits between them: frame →
//! encrypt → packetize on the way out, and reassemble → decrypt → frame on
//! the way in.

/// Largest RTP payload we produce, descriptor included: leaves room for the
/// RTP header, extensions and SRTP tag below a 1200-byte datagram.
pub const MAX_PAYLOAD: usize = 1100;

/// Length of the VP8 payload descriptor we write: X, I and a 15-bit PictureID.
pub const VP8_DESCRIPTOR_LEN: usize = 4;

/// One RTP payload of a frame, with the marker bit it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub data: Vec<u8>,
    /// Last packet of the frame.
    pub marker: bool,
}

/// Splits a VP8 frame into payloads of at most `MAX_PAYLOAD` bytes of nearly
/// equal size, each with a payload descriptor carrying `picture_id`
/// (15 bits used). The first has the S bit; the last one gets the marker.
pub fn packetize_vp8(frame: &[u8], picture_id: u16) -> Vec<Payload> {
    let room = MAX_PAYLOAD - VP8_DESCRIPTOR_LEN;
    let count = frame.len().div_ceil(room).max(1);
    let chunk = frame.len().div_ceil(count).max(1);
    let pid = picture_id & 0x7fff;
    let mut out = Vec::with_capacity(count);
    let mut chunks = frame.chunks(chunk).peekable();
    let mut first = true;
    // An empty frame still yields one (descriptor-only) packet.
    if frame.is_empty() {
        return vec![Payload {
            data: descriptor(true, pid).to_vec(),
            marker: true,
        }];
    }
    while let Some(part) = chunks.next() {
        let mut data = Vec::with_capacity(VP8_DESCRIPTOR_LEN + part.len());
        data.extend_from_slice(&descriptor(first, pid));
        data.extend_from_slice(part);
        out.push(Payload {
            data,
            marker: chunks.peek().is_none(),
        });
        first = false;
    }
    out
}

fn descriptor(start: bool, pid: u16) -> [u8; VP8_DESCRIPTOR_LEN] {
    // X=1, R=0, N=0 (every frame is a reference frame), S, R=0, PID=0.
    let b0 = 0x80 | if start { 0x10 } else { 0 };
    // I=1: PictureID present; L, T, K absent.
    let b1 = 0x80;
    // M=1: 15-bit PictureID.
    [b0, b1, 0x80 | (pid >> 8) as u8, pid as u8]
}

/// What a VP8 payload descriptor says, and where the VP8 bytes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    pub start: bool,
    pub partition: u8,
    pub picture_id: Option<u16>,
    pub header_len: usize,
}

/// Parses an RFC 7741 payload descriptor; `None` if it is truncated.
pub fn parse_vp8_descriptor(payload: &[u8]) -> Option<Vp8Descriptor> {
    let b0 = *payload.first()?;
    let mut at = 1;
    let mut picture_id = None;
    if b0 & 0x80 != 0 {
        let x = *payload.get(at)?;
        at += 1;
        if x & 0x80 != 0 {
            let p = *payload.get(at)?;
            if p & 0x80 != 0 {
                let lo = *payload.get(at + 1)?;
                picture_id = Some(u16::from(p & 0x7f) << 8 | u16::from(lo));
                at += 2;
            } else {
                picture_id = Some(u16::from(p));
                at += 1;
            }
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    if at > payload.len() {
        return None;
    }
    Some(Vp8Descriptor {
        start: b0 & 0x10 != 0,
        partition: b0 & 0x07,
        picture_id,
        header_len: at,
    })
}

/// Reassembles VP8 frames from payloads of one stream, in arrival order.
/// A frame is complete when it starts with an S packet, its sequence numbers
/// are contiguous and its last packet has the marker bit. Reordered or lost
/// packets drop the frame (counted), as a real jitter buffer would after
/// giving up.
#[derive(Debug, Default)]
pub struct Vp8Reassembler {
    current: Option<Partial>,
    pub malformed: u64,
    pub incomplete: u64,
}

#[derive(Debug)]
struct Partial {
    rtp_time: u32,
    next_seq: u64,
    data: Vec<u8>,
}

impl Vp8Reassembler {
    /// Feeds one packet; returns a whole frame when this packet completes one.
    pub fn push(
        &mut self,
        seq: u64,
        rtp_time: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let Some(desc) = parse_vp8_descriptor(payload) else {
            self.malformed += 1;
            return None;
        };
        let body = &payload[desc.header_len..];
        if desc.start && desc.partition == 0 {
            if self.current.take().is_some() {
                self.incomplete += 1;
            }
            self.current = Some(Partial {
                rtp_time,
                next_seq: seq,
                data: Vec::new(),
            });
        }
        let partial = self.current.as_mut()?;
        if partial.rtp_time != rtp_time || partial.next_seq != seq {
            self.current = None;
            self.incomplete += 1;
            return None;
        }
        partial.data.extend_from_slice(body);
        partial.next_seq = seq + 1;
        if marker {
            return self.current.take().map(|p| p.data);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{parse_vp8_frame, VideoClass, VideoSource};

    #[test]
    fn a_keyframe_splits_into_bounded_packets_and_reassembles_exactly() {
        let mut source = VideoSource::new(VideoClass::P720, 3);
        let frame = source.next_frame();
        assert!(frame.keyframe);
        let payloads = packetize_vp8(&frame.data, 0x1234);
        assert!(payloads.len() > 5);
        assert!(payloads.iter().all(|p| p.data.len() <= MAX_PAYLOAD));
        assert_eq!(payloads.iter().filter(|p| p.marker).count(), 1);
        assert!(payloads.last().is_some_and(|p| p.marker));
        let first = parse_vp8_descriptor(&payloads[0].data).expect("descriptor");
        assert!(first.start);
        assert_eq!(first.picture_id, Some(0x1234));
        // The first VP8 byte after the descriptor has P=0 (keyframe).
        assert_eq!(payloads[0].data[VP8_DESCRIPTOR_LEN] & 1, 0);
        assert!(payloads[1..]
            .iter()
            .all(|p| parse_vp8_descriptor(&p.data).is_some_and(|d| !d.start)));

        let mut r = Vp8Reassembler::default();
        let mut out = None;
        for (i, p) in payloads.iter().enumerate() {
            out = r.push(100 + i as u64, frame.rtp_time, p.marker, &p.data);
        }
        let out = out.expect("a whole frame");
        assert_eq!(out, frame.data);
        assert!(parse_vp8_frame(&out).is_some_and(|i| i.keyframe));
    }

    #[test]
    fn sframe_encrypted_frames_keep_their_vp8_header_through_packetizing() {
        use conclave_e2ee::{Codec, SframeContext};
        let mut tx = SframeContext::from_base_key(&[9u8; 16], 3, 1).expect("sender");
        let mut rx = SframeContext::from_base_key(&[9u8; 16], 3, 2).expect("receiver");
        let mut source = VideoSource::new(VideoClass::P360, 5);
        for want_key in [true, false] {
            let frame = source.next_frame();
            assert_eq!(frame.keyframe, want_key);
            let mut sealed = Vec::new();
            tx.encrypt(Codec::Vp8, &frame.data, &mut sealed)
                .expect("encrypt");
            let overhead = sealed.len() - frame.data.len();
            assert!((17..=28).contains(&overhead), "{overhead} bytes");
            let payloads = packetize_vp8(&sealed, 7);
            // What the SFU reads: the first VP8 byte after the descriptor.
            assert_eq!(
                payloads[0].data[VP8_DESCRIPTOR_LEN] & 1 == 0,
                want_key,
                "P bit in clear"
            );
            let mut r = Vp8Reassembler::default();
            let mut got = None;
            for (i, p) in payloads.iter().enumerate() {
                got = got.or(r.push(i as u64, frame.rtp_time, p.marker, &p.data));
            }
            let got = got.expect("reassembled");
            // The receiver's keyframe detection works on the encrypted frame…
            let info = parse_vp8_frame(&got).expect("a VP8 header in clear");
            assert_eq!(info.keyframe, want_key);
            if want_key {
                assert_eq!(info.size, Some((640, 360)));
            }
            // …and decryption gives back the original.
            let mut plain = Vec::new();
            rx.decrypt(Codec::Vp8, &got, &mut plain, 0)
                .expect("decrypt");
            assert_eq!(plain, frame.data);
        }
    }

    #[test]
    fn a_lost_packet_drops_the_frame_instead_of_corrupting_it() {
        let payloads = packetize_vp8(&[7u8; 5000], 1);
        let mut r = Vp8Reassembler::default();
        let mut got = None;
        for (i, p) in payloads.iter().enumerate() {
            if i == 2 {
                continue;
            }
            got = got.or(r.push(i as u64, 9, p.marker, &p.data));
        }
        assert_eq!(got, None);
        assert_eq!(r.incomplete, 1);
        assert_eq!(r.push(0, 9, false, &[]), None);
        assert_eq!(r.malformed, 1);
    }
}
