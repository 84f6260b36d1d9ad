//! The WebSocket side: turning a room link into a `/ws` address, and reading
//! server messages defensively. Anything the server sends that we cannot
//! use becomes a described `Incoming::Bad`, never a panic.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use conclave_protocol::{ServerMessage, MAX_MESSAGE_BYTES};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The meeting's invite secret (`#s=<base64url>` in a room link): members
/// use it to check that a joiner had the link. Never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteSecret(Vec<u8>);

/// Shortest secret accepted from a link (the browser's rule).
pub const MIN_SECRET_BYTES: usize = 16;

impl InviteSecret {
    /// 32 fresh random bytes.
    pub fn generate() -> Result<InviteSecret, String> {
        let mut bytes = vec![0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a secret: {e}"))?;
        Ok(InviteSecret(bytes))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<InviteSecret, String> {
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "an invite secret needs at least {MIN_SECRET_BYTES} bytes"
            ));
        }
        Ok(InviteSecret(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The `s=…` value of an invite link's fragment.
    pub fn to_fragment(&self) -> String {
        format!("s={}", B64URL.encode(&self.0))
    }
}

impl fmt::Debug for InviteSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteSecret(<redacted>)")
    }
}

/// Characters a room name keeps unescaped in a link.
const ROOM_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The invite secret in a link's fragment (`#s=…`, possibly among other
/// `&`-separated parameters), if any.
fn secret_from_fragment(fragment: &str) -> Result<Option<InviteSecret>, String> {
    let Some(value) = fragment
        .split('&')
        .find_map(|kv| kv.strip_prefix("s="))
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let bytes = B64URL
        .decode(value.trim_end_matches('='))
        .map_err(|_| "the invite secret (#s=…) is not base64url".to_string())?;
    InviteSecret::from_bytes(bytes).map(Some)
}

/// A room link split into what the agent needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomUrl {
    /// `ws://host:port/ws` (or `wss://`).
    pub ws_url: String,
    /// `host:port`, for choosing the local address media is sent from.
    pub authority: String,
    pub room: String,
    pub secure: bool,
    /// The invite secret from the link's fragment (`#s=…`).
    pub secret: Option<InviteSecret>,
}

impl RoomUrl {
    /// Parses `http://host:port/room` (or `https://`, `ws://`, `wss://`),
    /// with an optional invite fragment `#s=<base64url secret>`.
    pub fn parse(url: &str) -> Result<RoomUrl, String> {
        let (url, fragment) = url.split_once('#').unwrap_or((url, ""));
        let secret = secret_from_fragment(fragment)?;
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not a room link like http://host:8080/room"))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            other => return Err(format!("unsupported scheme {other:?} in {url:?}")),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let room_raw = path.trim_end_matches('/');
        if room_raw.is_empty() || room_raw.contains('/') {
            return Err(format!(
                "{url:?} does not name a room: expected one path segment, like http://host:8080/team"
            ));
        }
        let room = percent_decode_str(room_raw)
            .decode_utf8()
            .map_err(|e| format!("room name in {url:?} is not UTF-8: {e}"))?
            .into_owned();
        conclave_protocol::validate_room_name(&room)
            .map_err(|e| format!("invalid room name {room:?}: {e}"))?;
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_string()
        } else if secure {
            format!("{authority}:443")
        } else {
            format!("{authority}:80")
        };
        let ws_scheme = if secure { "wss" } else { "ws" };
        Ok(RoomUrl {
            ws_url: format!("{ws_scheme}://{authority}/ws"),
            authority,
            room,
            secure,
            secret,
        })
    }

    /// The page link for this room (no secret).
    pub fn page_link(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        let authority = match (
            self.secure,
            self.authority
                .strip_suffix(if self.secure { ":443" } else { ":80" }),
        ) {
            (_, Some(host)) => host,
            _ => self.authority.as_str(),
        };
        format!(
            "{scheme}://{authority}/{}",
            utf8_percent_encode(&self.room, ROOM_PATH)
        )
    }

    /// The link others need to join without knocking (carries the secret).
    pub fn invite_link(&self, secret: &InviteSecret) -> String {
        format!("{}#{}", self.page_link(), secret.to_fragment())
    }
}

/// One WebSocket text message from the server, classified.
#[derive(Debug)]
pub enum Incoming {
    Message(ServerMessage),
    /// Something we could not use, with a human description.
    Bad(String),
}

/// Known `type` values, to tell "unknown type" from "known type, bad fields".
const KNOWN_TYPES: [&str; 13] = [
    "welcome",
    "create_group",
    "mls",
    "commit_rejected",
    "keepalive",
    "offer",
    "tracks",
    "participant_joined",
    "participant_left",
    "participant_updated",
    "chat",
    "speaking",
    "error",
];

pub fn parse_server_message(text: &str) -> Incoming {
    if text.len() > MAX_MESSAGE_BYTES {
        return Incoming::Bad(format!(
            "message of {} bytes is over the {MAX_MESSAGE_BYTES}-byte limit",
            text.len()
        ));
    }
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Incoming::Bad(format!("malformed JSON ({e}): {}", excerpt(text))),
    };
    let Some(kind) = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
    else {
        return Incoming::Bad(format!("message without a type: {}", excerpt(text)));
    };
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        return Incoming::Bad(format!("unknown message type {kind:?}"));
    }
    match serde_json::from_value::<ServerMessage>(value) {
        Ok(m) => Incoming::Message(m),
        Err(e) => Incoming::Bad(format!("unreadable {kind:?} message: {e}")),
    }
}

fn excerpt(text: &str) -> String {
    let cut: String = text.chars().take(80).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_links_become_websocket_addresses() {
        let u = RoomUrl::parse("http://127.0.0.1:8080/my-room").expect("valid");
        assert_eq!(u.ws_url, "ws://127.0.0.1:8080/ws");
        assert_eq!(u.room, "my-room");
        let u = RoomUrl::parse("https://example.org/caf%C3%A9/").expect("valid");
        assert_eq!(u.ws_url, "wss://example.org:443/ws");
        assert_eq!(u.room, "café");
        assert!(RoomUrl::parse("http://127.0.0.1:8080/").is_err());
        assert!(RoomUrl::parse("127.0.0.1:8080/x").is_err());
        assert!(RoomUrl::parse("http://h:1/a/b").is_err());
    }

    #[test]
    fn the_invite_secret_comes_from_the_fragment_and_round_trips() {
        let secret = InviteSecret::from_bytes((0u8..32).collect()).expect("32 bytes");
        let u = RoomUrl::parse("http://127.0.0.1:8080/caf%C3%A9").expect("valid");
        assert_eq!(u.secret, None);
        let link = u.invite_link(&secret);
        assert!(
            link.starts_with("http://127.0.0.1:8080/caf%C3%A9#s="),
            "{link}"
        );
        let back = RoomUrl::parse(&link).expect("an invite link parses");
        assert_eq!(back.secret.as_ref(), Some(&secret));
        assert_eq!(back.room, "café");
        assert!(!format!("{back:?}").contains(&secret.to_fragment()[2..]));
        let other = RoomUrl::parse("http://h:1/r#x=1&s=AAECAwQFBgcICQoLDA0ODw").expect("valid");
        assert_eq!(other.secret.map(|s| s.as_bytes().len()), Some(16));
        assert!(RoomUrl::parse("http://h:1/r#s=short").is_err());
        assert!(RoomUrl::parse("http://h:1/r#s=not*base64url*at*all!").is_err());
        assert_eq!(
            RoomUrl::parse("http://example.org/r")
                .expect("valid")
                .page_link(),
            "http://example.org/r"
        );
    }

    #[test]
    fn bad_messages_are_described_not_fatal() {
        assert!(
            matches!(parse_server_message("{nope"), Incoming::Bad(m) if m.contains("malformed"))
        );
        assert!(
            matches!(parse_server_message(r#"{"type":"bogus"}"#), Incoming::Bad(m) if m.contains("unknown message type"))
        );
        assert!(
            matches!(parse_server_message(r#"{"type":"offer","sdp":1}"#), Incoming::Bad(m) if m.contains("offer"))
        );
        assert!(matches!(
            parse_server_message(r#"{"type":"speaking","ids":[1]}"#),
            Incoming::Message(ServerMessage::Speaking { .. })
        ));
        assert!(matches!(
            parse_server_message(
                r#"{"type":"tracks","tracks":[{"mid":"4","direction":"subscribe","participant":2,"source":"camera"}]}"#
            ),
            Incoming::Message(ServerMessage::Tracks { tracks }) if tracks.len() == 1
        ));
        assert!(
            matches!(parse_server_message(r#"{"type":"tracks","tracks":[{"mid":4}]}"#), Incoming::Bad(m) if m.contains("tracks"))
        );
    }
}
