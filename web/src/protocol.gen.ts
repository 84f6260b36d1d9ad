// Generated from crates/protocol by `cargo run -p conclave-protocol --bin gen-ts`.
// Do not edit by hand: a Rust test fails when this file and the Rust types differ.

export type ParticipantId = number;

export type TrackSource = "microphone" | "camera" | "screen";

export type MediaState = { microphone: boolean, camera: boolean, screen: boolean, };

export type ParticipantInfo = { id: number, 
/**
 * The name the participant gave the server. Clients show the name from
 * the MLS roster; this one is only a claim.
 */
name: string, media: MediaState, 
/**
 * Hex MLS signature public key (as in the roster) from the participant's latest join
 * request (or GroupInfo, for the group's creator); `null` before it sent
 * one. Clients match it against the MLS roster: a participant whose key
 * is not in the roster is shown as unverified and gets no keys.
 */
key: string | null, };

export type E2eeStart = { 
/**
 * True: the room has no MLS group yet and this participant creates it
 * (then sends `group_created`). False: send a `join_request`.
 */
create: boolean, 
/**
 * Base64 TLS-serialized MLS ExternalSender of this server, for the new
 * group's `external_senders` extension (so the server can propose removals).
 */
external_sender: string, };

export type TrackDirection = "publish" | "subscribe";

export type TrackMapping = { mid: string, direction: TrackDirection, participant: number, source: TrackSource, };

export type ClientMessage = { "type": "join", room: string, name: string, media: MediaState, } | { "type": "answer", sdp: string, } | { "type": "media_state", media: MediaState, } | { "type": "chat", data: string, } | { "type": "group_created", group_info: string, } | { "type": "join_request", data: string, } | { "type": "commit", commit: string, welcome: string | null, } | { "type": "deny_knock", id: number, } | { "type": "ice_restart" } | { "type": "hidden_video", participants: Array<number>, } | { "type": "leave" } | { "type": "resume", token: string, received: number, };

export type ErrorCode = "bad_message" | "too_large" | "invalid_room" | "invalid_name" | "not_joined" | "already_joined" | "room_full" | "too_many_connections" | "bad_sdp" | "rate_limited" | "media_failed" | "knock_denied" | "bad_mls" | "resume_failed" | "internal";

export type ServerMessage = { "type": "welcome", you: ParticipantInfo, participants: Array<ParticipantInfo>, e2ee: E2eeStart, } | { "type": "create_group", e2ee: E2eeStart, } | { "type": "mls", from: number | null, data: string, } | { "type": "commit_rejected", reason: string, } | { "type": "offer", sdp: string, tracks: Array<TrackMapping>, } | { "type": "tracks", tracks: Array<TrackMapping>, } | { "type": "participant_joined", participant: ParticipantInfo, } | { "type": "participant_left", id: number, } | { "type": "participant_updated", participant: ParticipantInfo, } | { "type": "chat", seq: number, from: number, 
/**
 * Base64 MLS application message; the sender and text come from decrypting it.
 */
data: string, 
/**
 * Server time, milliseconds since the Unix epoch.
 */
sent_at: number, } | { "type": "speaking", ids: Array<number>, } | { "type": "keepalive" } | { "type": "session", resume: string, } | { "type": "resumed", resume: string, } | { "type": "error", code: ErrorCode, message: string, };

export const MAX_MESSAGE_BYTES = 524288;
export const MAX_CHAT_CHARS = 4000;
export const MAX_MLS_BYTES = 393216;
export const MAX_CHAT_CIPHERTEXT_BYTES = 32768;
export const MAX_NAME_CHARS = 64;
export const MAX_ROOM_CHARS = 64;
export const KEEPALIVE_SECONDS = 10;
