// Generated from crates/protocol by `cargo run -p conclave-protocol --bin gen-ts`.
// Do not edit by hand: a Rust test fails when this file and the Rust types differ.

export type ParticipantId = number;

export type TrackSource = "microphone" | "camera" | "screen";

export type MediaState = { microphone: boolean, camera: boolean, screen: boolean, };

export type ParticipantInfo = { id: number, name: string, media: MediaState, };

export type TrackDirection = "publish" | "subscribe";

export type TrackMapping = { mid: string, direction: TrackDirection, participant: number, source: TrackSource, };

export type ClientMessage = { "type": "join", room: string, name: string, media: MediaState, } | { "type": "answer", sdp: string, } | { "type": "media_state", media: MediaState, } | { "type": "chat", text: string, } | { "type": "leave" };

export type ErrorCode = "bad_message" | "too_large" | "invalid_room" | "invalid_name" | "not_joined" | "already_joined" | "room_full" | "bad_sdp" | "rate_limited" | "media_failed" | "internal";

export type ServerMessage = { "type": "welcome", you: ParticipantInfo, participants: Array<ParticipantInfo>, } | { "type": "offer", sdp: string, tracks: Array<TrackMapping>, } | { "type": "participant_joined", participant: ParticipantInfo, } | { "type": "participant_left", id: number, } | { "type": "participant_updated", participant: ParticipantInfo, } | { "type": "chat", seq: number, from: number, name: string, text: string, 
/**
 * Server time, milliseconds since the Unix epoch.
 */
sent_at: number, } | { "type": "speaking", ids: Array<number>, } | { "type": "keepalive" } | { "type": "error", code: ErrorCode, message: string, };

export const MAX_MESSAGE_BYTES = 524288;
export const MAX_CHAT_CHARS = 4000;
export const MAX_NAME_CHARS = 64;
export const MAX_ROOM_CHARS = 64;
export const KEEPALIVE_SECONDS = 10;
