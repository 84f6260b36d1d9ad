//! The little of VP8 the SFU reads: whether a packet starts a keyframe.
//! SFrame leaves byte 0 of every VP8 frame in clear (its P bit is the
//! inverse keyframe flag), after the RTP payload descriptor (RFC 7741).

/// Whether this VP8 RTP payload is the first packet of a keyframe.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    // S (start of a partition) and partition index 0: the frame's first bytes.
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return false;
    }
    let mut at = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = payload.get(at) else {
            return false;
        };
        at += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            match payload.get(at) {
                Some(p) if p & 0x80 != 0 => at += 2,
                Some(_) => at += 1,
                None => return false,
            }
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    payload
        .get(at)
        .is_some_and(|frame_tag| frame_tag & 0x01 == 0)
}

#[cfg(test)]
mod tests {
    use super::starts_keyframe;

    #[test]
    fn keyframe_starts_are_recognised_behind_every_descriptor_shape() {
        // Minimal descriptor, S=1 PID=0; frame tag P=0 (key) / P=1 (delta).
        assert!(starts_keyframe(&[0x10, 0x50]));
        assert!(!starts_keyframe(&[0x10, 0x51]));
        // Not the start of the frame.
        assert!(!starts_keyframe(&[0x00, 0x50]));
        assert!(!starts_keyframe(&[0x11, 0x50]));
        // X with a 15-bit PictureID (as browsers send), then TL0PICIDX and TID.
        assert!(starts_keyframe(&[0x90, 0xe0, 0x81, 0x23, 0x07, 0x20, 0x50]));
        assert!(!starts_keyframe(&[
            0x90, 0xe0, 0x81, 0x23, 0x07, 0x20, 0x51
        ]));
        // 7-bit PictureID.
        assert!(starts_keyframe(&[0x90, 0x80, 0x05, 0x50]));
        // Truncated or empty: not a keyframe, never a panic.
        for bad in [
            &[][..],
            &[0x90],
            &[0x90, 0x80],
            &[0x90, 0x80, 0x85, 0x01],
            &[0x10],
        ] {
            assert!(!starts_keyframe(bad), "{bad:?}");
        }
    }
}
