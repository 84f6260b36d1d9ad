//! The WebSocket side: turning a room link into a `/ws` address, and reading
//! server messages defensively. Anything the server sends that we cannot
//! use becomes a described `Incoming::Bad`, never a panic.

use conclave_protocol::{ServerMessage, MAX_MESSAGE_BYTES};
use percent_encoding::percent_decode_str;

/// A room link split into what the agent needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomUrl {
    /// `ws://host:port/ws` (or `wss://`).
    pub ws_url: String,
    /// `host:port`, for choosing the local address media is sent from.
    pub authority: String,
    pub room: String,
    pub secure: bool,
}

impl RoomUrl {
    /// Parses `http://host:port/room` (or `https://`, `ws://`, `wss://`).
    pub fn parse(url: &str) -> Result<RoomUrl, String> {
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
        })
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
const KNOWN_TYPES: [&str; 8] = [
    "welcome",
    "offer",
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
    }
}
