//! HTTP routes: the embedded web client, room pages, the WebSocket endpoint.
//!
//! Every response carries a Content-Security-Policy that allows only this
//! origin, so the client cannot be made to load anything from a third party.

use axum::body::Body;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State, WebSocketUpgrade};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use conclave_protocol::validate_room_name;
use rust_embed::RustEmbed;

use crate::connections::ConnectionLimit;
use crate::hub::HubHandle;
use crate::signaling::{self, MAX_FRAME_BYTES};

#[derive(Clone)]
pub struct AppState {
    pub hub: HubHandle,
    pub connections: Arc<ConnectionLimit>,
}

#[derive(RustEmbed)]
#[folder = "../../web/dist"]
pub(crate) struct Assets;

/// `connect-src 'self'` also admits the WebSocket to this same host and port:
/// in CSP Level 3 (Chromium, Firefox) `'self'` matches `ws:`/`wss:`
/// on the page's own host, and no other host is reachable.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; \
    img-src 'self' data: blob:; media-src 'self' blob: mediastream:; style-src 'self'; \
    script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; object-src 'none'; \
    base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok" }))
        .route(ERROR_STYLESHEET, get(error_stylesheet))
        .route("/{*path}", get(asset_or_room))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(self), display-capture=(self)"),
    );
    response
}

async fn websocket(
    upgrade: WebSocketUpgrade,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let upgrade = upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES);
    // Refused over the WebSocket itself: a browser cannot read an HTTP error
    // status of a failed upgrade, and the person needs to know why.
    let Some(permit) = state.connections.try_open(peer.ip()) else {
        let max = state.connections.max();
        tracing::info!(%peer, max, "refused a connection: too many from this address");
        return upgrade.on_upgrade(move |socket| {
            signaling::refuse(
                socket,
                conclave_protocol::ErrorCode::TooManyConnections,
                format!(
                    "your address already has {max} open connections, the most this server allows"
                ),
            )
        });
    };
    let hub = state.hub;
    upgrade.on_upgrade(move |socket| async move {
        signaling::serve(socket, hub).await;
        drop(permit);
    })
}

async fn index() -> Response {
    serve_index(StatusCode::OK)
}

async fn asset_or_room(Path(path): Path<String>) -> Response {
    if let Some(file) = Assets::get(&path) {
        let mime = mime_guess::from_path(&path).first_or_octet_stream();
        let cache = if path.starts_with("assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        return (
            [
                (header::CONTENT_TYPE, mime.as_ref().to_owned()),
                (header::CACHE_CONTROL, cache.to_owned()),
            ],
            Body::from(file.data.into_owned()),
        )
            .into_response();
    }
    // A path with a slash (the client's files are under assets/) is a file
    // that is not there; anything else is meant as a room (Axum has already
    // percent-decoded it).
    if path.contains('/') {
        return not_found().await;
    }
    match validate_room_name(&path) {
        Ok(()) => serve_index(StatusCode::OK),
        Err(e) => error_page(ErrorPage {
            status: StatusCode::BAD_REQUEST,
            title: "This is not a meeting link",
            detail: &format!("“{}” cannot be a room name: {e}.", shortened(&path)),
            hint: Some(ROOM_NAME_RULES),
        }),
    }
}

const ROOM_NAME_RULES: &str = "Check the link you were sent, or start a new meeting.";

async fn not_found() -> Response {
    error_page(ErrorPage {
        status: StatusCode::NOT_FOUND,
        title: "Nothing here",
        detail: "This address is not a page of this Conclave server.",
        hint: None,
    })
}

async fn method_not_allowed() -> Response {
    error_page(ErrorPage {
        status: StatusCode::METHOD_NOT_ALLOWED,
        title: "Not something this page does",
        detail: "The browser asked this address for something it does not serve.",
        hint: None,
    })
}

fn serve_index(status: StatusCode) -> Response {
    match Assets::get("index.html") {
        Some(file) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from(file.data.into_owned()),
        )
            .into_response(),
        None => error_page(ErrorPage {
            status: StatusCode::SERVICE_UNAVAILABLE,
            title: "The web client is missing",
            detail: "This conclave binary was built without the web client (web/dist).",
            hint: Some("Whoever runs this server: rebuild it with Node.js installed."),
        }),
    }
}

/// Served by the binary, so an error page looks like the app even when the
/// client's hashed assets are not what the visitor asked for.
const ERROR_STYLESHEET: &str = "/conclave-error.css";

async fn error_stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("error_page.css"),
    )
        .into_response()
}

struct ErrorPage<'a> {
    status: StatusCode,
    title: &'a str,
    /// What happened, in words the visitor can act on.
    detail: &'a str,
    /// What to do about it, if there is more to say than the button.
    hint: Option<&'a str>,
}

/// An error in the app's design, with a way forward: the start page.
fn error_page(page: ErrorPage) -> Response {
    let hint = page
        .hint
        .map(|h| format!("<p>{}</p>", escape_html(h)))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Conclave</title>\
         <link rel=\"stylesheet\" href=\"{ERROR_STYLESHEET}\"></head><body>\
         <main aria-labelledby=\"error-title\"><p class=\"brand\">Conclave</p>\
         <h1 id=\"error-title\">{title}</h1><p>{detail}</p>{hint}\
         <a class=\"btn\" href=\"/\">Go to the start page</a></main></body></html>",
        title = escape_html(page.title),
        detail = escape_html(page.detail),
    );
    (
        page.status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

/// At most 64 characters of what the visitor typed, for showing it back.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_escape_what_the_visitor_typed() {
        assert_eq!(
            escape_html("<b>\"x\"&'"),
            "&lt;b&gt;&quot;x&quot;&amp;&#39;"
        );
    }

    #[test]
    fn what_the_visitor_typed_is_shown_back_at_most_64_characters_long() {
        assert_eq!(shortened("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(shortened(&long), format!("{}…", "é".repeat(64)));
    }
}
