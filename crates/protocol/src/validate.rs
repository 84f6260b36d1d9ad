//! Rules for the human-chosen strings in the protocol: room and display names.

use std::fmt;

use crate::{MAX_NAME_CHARS, MAX_ROOM_CHARS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError(pub String);

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValidationError {}

/// A room name is one URL path segment: letters and digits of any script,
/// plus `-`, `_`, `.` and `~`, 1 to `MAX_ROOM_CHARS` characters, not `.` or `..`.
pub fn validate_room_name(room: &str) -> Result<(), ValidationError> {
    let count = room.chars().count();
    if count == 0 {
        return Err(ValidationError("the room name is empty".into()));
    }
    if count > MAX_ROOM_CHARS {
        return Err(ValidationError(format!(
            "the room name is {count} characters; at most {MAX_ROOM_CHARS} are allowed"
        )));
    }
    if room == "." || room == ".." {
        return Err(ValidationError(
            "\".\" and \"..\" are not room names".into(),
        ));
    }
    if let Some(bad) = room
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')))
    {
        let bad = match bad {
            ' ' => "a space".to_owned(),
            c if c.is_control() || c.is_whitespace() => format!("U+{:04X}", u32::from(c)),
            c => format!("'{c}'"),
        };
        return Err(ValidationError(format!(
            "room names may contain letters, digits, '-', '_', '.' and '~', not {bad}"
        )));
    }
    Ok(())
}

/// A display name is trimmed by the client; here it must be 1 to
/// `MAX_NAME_CHARS` characters with no control characters and not only spaces.
pub fn validate_display_name(name: &str) -> Result<(), ValidationError> {
    let count = name.chars().count();
    if name.trim().is_empty() {
        return Err(ValidationError("the name is empty".into()));
    }
    if count > MAX_NAME_CHARS {
        return Err(ValidationError(format!(
            "the name is {count} characters; at most {MAX_NAME_CHARS} are allowed"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ValidationError(
            "the name contains control characters".into(),
        ));
    }
    // Bidi overrides and zero-width characters make one name look like another.
    if name.chars().any(|c| {
        matches!(c as u32, 0x061C | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF)
    }) {
        return Err(ValidationError(
            "the name contains invisible formatting characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_and_international_room_names_are_accepted() {
        for room in ["standup", "team-42", "Café_Lundi", "会议室", "a.b~c"] {
            assert_eq!(validate_room_name(room), Ok(()), "{room}");
        }
    }

    #[test]
    fn room_names_that_are_not_one_path_segment_are_refused() {
        for room in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "a?b",
            "<script>",
            "x%2F",
            &"r".repeat(65),
        ] {
            assert!(
                validate_room_name(room).is_err(),
                "{room:?} should be refused"
            );
        }
    }

    #[test]
    fn a_refused_character_is_named_readably() {
        let reason = |room: &str| validate_room_name(room).expect_err("refused").to_string();
        assert!(reason("a b").ends_with("not a space"), "{}", reason("a b"));
        assert!(reason("a!").ends_with("not '!'"), "{}", reason("a!"));
        assert!(reason("a\tb").ends_with("not U+0009"), "{}", reason("a\tb"));
    }

    #[test]
    fn display_names_must_be_printable_and_short() {
        assert_eq!(validate_display_name("Ada Lovelace"), Ok(()));
        assert!(validate_display_name("   ").is_err());
        assert!(validate_display_name("bell\u{7}").is_err());
        assert!(validate_display_name(&"n".repeat(65)).is_err());
        assert!(validate_display_name("Bob\u{202E}").is_err());
        assert!(validate_display_name("B\u{200B}ob").is_err());
    }
}
