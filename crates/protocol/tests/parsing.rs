use conclave_protocol::*;

fn error_code(result: Result<ClientMessage, ServerMessage>) -> ErrorCode {
    match result {
        Err(ServerMessage::Error { code, .. }) => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn a_join_message_parses() {
    let msg = parse_client_message(
        r#"{"type":"join","room":"r","name":"Ada","media":{"microphone":true,"camera":false,"screen":false}}"#,
    )
    .expect("valid join");
    assert!(matches!(msg, ClientMessage::Join { ref name, .. } if name == "Ada"));
}

#[test]
fn unknown_types_and_extra_fields_are_bad_messages() {
    assert_eq!(
        error_code(parse_client_message(r#"{"type":"nuke"}"#)),
        ErrorCode::BadMessage
    );
    assert_eq!(
        error_code(parse_client_message(
            r#"{"type":"chat","text":"hi","admin":true}"#
        )),
        ErrorCode::BadMessage
    );
    assert_eq!(
        error_code(parse_client_message("not json")),
        ErrorCode::BadMessage
    );
    assert_eq!(
        error_code(parse_client_message(r#"{"type":"chat","text":7}"#)),
        ErrorCode::BadMessage
    );
}

#[test]
fn oversized_messages_are_refused_before_parsing() {
    let huge = format!(
        r#"{{"type":"chat","text":"{}"}}"#,
        "a".repeat(MAX_MESSAGE_BYTES)
    );
    assert_eq!(error_code(parse_client_message(&huge)), ErrorCode::TooLarge);
}

#[test]
fn server_messages_are_tagged_with_snake_case_types() {
    let json =
        serde_json::to_string(&ServerMessage::ParticipantLeft { id: 3 }).expect("serializes");
    assert_eq!(json, r#"{"type":"participant_left","id":3}"#);
}
