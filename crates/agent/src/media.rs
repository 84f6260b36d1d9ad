//! Synthetic media sources: whole encoded frames that look like Opus and VP8
//! to anything that only reads headers (the SFU, RTP statistics, a packet
//! capture), at the sizes and rates a browser would send.
//!
//! This module builds *frames*; it never knows about RTP. Packetizing is
//! `packetize`'s job, so that an SFrame (E2EE) step can later encrypt each
//! whole frame between the two, exactly where a browser's encoded-transform
//! sits.

use std::time::Duration;

/// One encoded frame, as an encoder would hand it to the RTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    /// RTP timestamp (48 kHz for audio, 90 kHz for video).
    pub rtp_time: u32,
    pub keyframe: bool,
    /// RFC 6464 audio level (0 = loudest … -127 = silence), audio only.
    pub audio_level: Option<i8>,
    /// Voice activity flag, audio only.
    pub voice: Option<bool>,
}

/// Tiny deterministic PRNG (xorshift64*): payload bytes and size jitter need
/// to vary, not to be secure, and must not cost a syscall per frame.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as usize
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Opus-shaped audio: one 20 ms packet per call, 60–160 bytes, with an
/// audio level that alternates between speech and silence so that the
/// server's speaking indicator moves.
#[derive(Debug, Clone)]
pub struct AudioSource {
    rng: Rng,
    rtp_time: u32,
    frame_index: u64,
    /// Frames per speech (and per silence) period.
    period_frames: u64,
    phase: u64,
}

impl AudioSource {
    pub const FRAME: Duration = Duration::from_millis(20);
    /// 20 ms at 48 kHz.
    pub const TICKS_PER_FRAME: u32 = 960;

    /// `seed` also staggers the speaking phase so participants take turns.
    pub fn new(seed: u64) -> AudioSource {
        let mut rng = Rng::new(seed ^ 0xA0D1_0000);
        let rtp_time = rng.next_u64() as u32;
        let period_frames = 150; // 3 s talking, 3 s quiet
        AudioSource {
            rng,
            rtp_time,
            frame_index: 0,
            period_frames,
            phase: seed.wrapping_mul(37) % (2 * period_frames),
        }
    }

    pub fn next_frame(&mut self) -> EncodedFrame {
        let speaking = ((self.frame_index + self.phase) / self.period_frames) & 1 == 0;
        let (len, level) = if speaking {
            (self.rng.range(100, 160), -(self.rng.range(15, 35) as i8))
        } else {
            (self.rng.range(60, 80), -(self.rng.range(90, 127) as i8))
        };
        let mut data = vec![0u8; len];
        self.rng.fill(&mut data);
        // TOC byte: config 15 (hybrid, fullband, 20 ms), mono, one frame.
        data[0] = 15 << 3;
        let frame = EncodedFrame {
            data,
            rtp_time: self.rtp_time,
            keyframe: false,
            audio_level: Some(level),
            voice: Some(speaking),
        };
        self.rtp_time = self.rtp_time.wrapping_add(Self::TICKS_PER_FRAME);
        self.frame_index += 1;
        frame
    }
}

/// The video quality classes the agent can send, like a browser's camera at
/// common resolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum VideoClass {
    P720,
    P360,
    P180,
}

impl VideoClass {
    pub fn parse(s: &str) -> Option<Option<VideoClass>> {
        match s {
            "720p" => Some(Some(VideoClass::P720)),
            "360p" => Some(Some(VideoClass::P360)),
            "180p" => Some(Some(VideoClass::P180)),
            "off" => Some(None),
            _ => None,
        }
    }

    pub fn dimensions(self) -> (u16, u16) {
        match self {
            VideoClass::P720 => (1280, 720),
            VideoClass::P360 => (640, 360),
            VideoClass::P180 => (320, 180),
        }
    }

    pub fn fps(self) -> u32 {
        match self {
            VideoClass::P180 => 15,
            _ => 30,
        }
    }

    pub fn bitrate_bps(self) -> u32 {
        match self {
            VideoClass::P720 => 1_500_000,
            VideoClass::P360 => 500_000,
            VideoClass::P180 => 150_000,
        }
    }

    pub fn frame_interval(self) -> Duration {
        Duration::from_secs(1) / self.fps()
    }
}

/// VP8-shaped video: a keyframe every 2 s (or on request), delta frames in
/// between, sized so the average matches the class's bitrate. Each frame
/// starts with a real VP8 frame tag (RFC 6386 §9.1), and keyframes carry the
/// start code and dimensions, so header-reading tools recognise them.
#[derive(Debug, Clone)]
pub struct VideoSource {
    class: VideoClass,
    rng: Rng,
    rtp_time: u32,
    frames_since_key: u32,
    force_key: bool,
    delta_bytes: usize,
}

impl VideoSource {
    /// Keyframes are this many times larger than delta frames.
    const KEY_RATIO: usize = 8;

    pub fn new(class: VideoClass, seed: u64) -> VideoSource {
        let mut rng = Rng::new(seed ^ 0x71DE_0000);
        let rtp_time = rng.next_u64() as u32;
        let gop = (2 * class.fps()) as usize;
        let gop_bytes = class.bitrate_bps() as usize * 2 / 8;
        let delta_bytes = gop_bytes / (gop - 1 + Self::KEY_RATIO);
        VideoSource {
            class,
            rng,
            rtp_time,
            frames_since_key: 0,
            force_key: true,
            delta_bytes,
        }
    }

    pub fn class(&self) -> VideoClass {
        self.class
    }

    /// The next frame is a keyframe (a PLI or FIR arrived).
    pub fn request_keyframe(&mut self) {
        self.force_key = true;
    }

    pub fn next_frame(&mut self) -> EncodedFrame {
        let keyframe = self.force_key || self.frames_since_key + 1 >= 2 * self.class.fps();
        let base = if keyframe {
            self.delta_bytes * Self::KEY_RATIO
        } else {
            self.delta_bytes
        };
        let len = self.rng.range(base * 85 / 100, base * 115 / 100).max(16);
        let mut data = vec![0u8; len];
        self.rng.fill(&mut data);
        // Frame tag: bit 0 = P (0 for keyframes), bits 1-3 version 0,
        // bit 4 show_frame, bits 5-23 first partition size.
        let first_part = (len as u32 / 4).min((1 << 19) - 1);
        let tag = u32::from(!keyframe) | (1 << 4) | (first_part << 5);
        data[..3].copy_from_slice(&tag.to_le_bytes()[..3]);
        if keyframe {
            let (w, h) = self.class.dimensions();
            data[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
            data[6..8].copy_from_slice(&(w & 0x3fff).to_le_bytes());
            data[8..10].copy_from_slice(&(h & 0x3fff).to_le_bytes());
            self.frames_since_key = 0;
            self.force_key = false;
        } else {
            self.frames_since_key += 1;
        }
        let frame = EncodedFrame {
            data,
            rtp_time: self.rtp_time,
            keyframe,
            audio_level: None,
            voice: None,
        };
        self.rtp_time = self.rtp_time.wrapping_add(90_000 / self.class.fps());
        frame
    }
}

/// What a VP8 frame's first bytes say, for checking received frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8FrameInfo {
    pub keyframe: bool,
    /// Width and height, keyframes only.
    pub size: Option<(u16, u16)>,
}

/// Reads a VP8 frame header; `None` if the bytes cannot be a VP8 frame.
pub fn parse_vp8_frame(data: &[u8]) -> Option<Vp8FrameInfo> {
    let tag = data.get(..3)?;
    let keyframe = tag[0] & 1 == 0;
    if !keyframe {
        return Some(Vp8FrameInfo {
            keyframe,
            size: None,
        });
    }
    let head = data.get(3..10)?;
    if head[..3] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([head[3], head[4]]) & 0x3fff;
    let h = u16::from_le_bytes([head[5], head[6]]) & 0x3fff;
    Some(Vp8FrameInfo {
        keyframe,
        size: Some((w, h)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_bitrate_matches_the_class_over_a_few_seconds() {
        for class in [VideoClass::P720, VideoClass::P360, VideoClass::P180] {
            let mut source = VideoSource::new(class, 7);
            let frames = class.fps() * 10;
            let bytes: usize = (0..frames).map(|_| source.next_frame().data.len()).sum();
            let bps = bytes as f64 * 8.0 / 10.0;
            let target = f64::from(class.bitrate_bps());
            assert!((bps / target - 1.0).abs() < 0.1, "{class:?}: {bps} bps");
        }
    }

    #[test]
    fn keyframes_come_first_every_two_seconds_and_on_request() {
        let mut source = VideoSource::new(VideoClass::P360, 1);
        let first = source.next_frame();
        assert_eq!(
            parse_vp8_frame(&first.data),
            Some(Vp8FrameInfo {
                keyframe: true,
                size: Some((640, 360))
            })
        );
        let keys: Vec<usize> = (1..=120).filter(|_| source.next_frame().keyframe).collect();
        assert_eq!(keys, vec![60, 120]);
        source.request_keyframe();
        let forced = source.next_frame();
        assert!(forced.keyframe && parse_vp8_frame(&forced.data).is_some_and(|i| i.keyframe));
        let delta = source.next_frame();
        assert_eq!(
            parse_vp8_frame(&delta.data).map(|i| i.keyframe),
            Some(false)
        );
        assert_eq!(delta.rtp_time.wrapping_sub(forced.rtp_time), 3000);
    }

    #[test]
    fn audio_alternates_speech_and_silence_at_opus_sizes() {
        let mut source = AudioSource::new(0);
        let frames: Vec<EncodedFrame> = (0..600).map(|_| source.next_frame()).collect();
        assert!(frames.iter().all(|f| (60..=160).contains(&f.data.len())));
        assert!(frames.iter().any(|f| f.voice == Some(true)));
        assert!(frames.iter().any(|f| f.voice == Some(false)));
        assert_eq!(frames[1].rtp_time.wrapping_sub(frames[0].rtp_time), 960);
    }
}
