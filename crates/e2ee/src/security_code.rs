//! Human-comparable security code.
//!
//! Exists so people can detect a man in the middle (e.g. a server that split
//! the group or inserted a member) by reading a short code aloud: every
//! member of the same MLS epoch derives the same code from the epoch
//! authenticator (RFC 9420 §8.7), and anyone with a different view of the
//! group state gets a different code.
//!
//! Format: 30 decimal digits in 6 groups of 5 (≈ 99.6 bits), like Discord's
//! DAVE privacy code. Each group is 40 bits of
//! `HKDF-SHA256(ikm = epoch_authenticator, info = "conclave security code v1")`
//! reduced mod 100000 (bias < 2^-23 per group).

use hkdf::Hkdf;
use sha2::Sha256;

/// Number of 5-digit groups in the code.
pub const GROUPS: usize = 6;

/// Derive the security code string ("12345 67890 ...") from an epoch authenticator.
pub fn security_code(epoch_authenticator: &[u8]) -> String {
    let hk = Hkdf::<Sha256>::new(None, epoch_authenticator);
    let mut okm = [0u8; 5 * GROUPS];
    // 30 bytes is far below HKDF's 255*32 limit; expand cannot fail.
    if hk.expand(b"conclave security code v1", &mut okm).is_err() {
        return String::new();
    }
    okm.chunks(5)
        .map(|c| {
            let v = c.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
            format!("{:05}", v % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn code_has_six_groups_of_five_digits_and_depends_on_input() {
        let a = super::security_code(&[1u8; 32]);
        let b = super::security_code(&[2u8; 32]);
        assert_eq!(a.len(), 6 * 5 + 5);
        assert!(a
            .split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit())));
        assert_ne!(a, b);
    }
}
