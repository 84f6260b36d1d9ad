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
        .route("/{*path}", get(asset_or_room))
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
    // Axum has already percent-decoded the path.
    match validate_room_name(&path) {
        Ok(()) => serve_index(StatusCode::OK),
        Err(e) => error_page(
            StatusCode::BAD_REQUEST,
            "This is not a room name",
            &e.to_string(),
        ),
    }
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
        None => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The web client is missing",
            "This conclave binary was built without the web client (web/dist). Rebuild with Node.js installed.",
        ),
    }
}

fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Conclave</title></head><body><main>\
         <h1>{title}</h1><p>{detail}</p>\
         <p>Room names may use letters, digits, <code>-</code>, <code>_</code>, <code>.</code> and <code>~</code>, up to 64 characters.</p>\
         <p><a href=\"/\">Start or join a meeting</a></p></main></body></html>",
        title = escape_html(title),
        detail = escape_html(detail),
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
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
}
