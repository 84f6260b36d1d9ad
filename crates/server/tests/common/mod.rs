//! Test harness: starts the real `conclave` binary on loopback with ports
//! chosen by the OS, and talks to it as clients do.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conclave_protocol::{ClientMessage, MediaState, ServerMessage, TrackDirection};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct Server {
    child: Child,
    pub http: SocketAddr,
    pub udp: SocketAddr,
    /// The ICE-TCP port (the passive candidate offers announce).
    pub tcp: SocketAddr,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts with extra command-line flags.
    pub fn start_with(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_conclave"))
            .args(["--listen", "127.0.0.1:0", "--udp-port", "0"])
            .args(extra)
            .env("CONCLAVE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the conclave binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let parsed = between(&line, "http://", "/")
            .and_then(|h| h.parse().ok())
            .zip(between(&line, "media on UDP ", ",").and_then(|u| u.parse().ok()))
            .zip(between(&line, "; TCP ", ",").and_then(|t| t.parse().ok()));
        let Some(((http, udp), tcp)) = parsed else {
            let _ = child.kill();
            panic!("unexpected ready line from the server: {line:?}");
        };
        Server {
            child,
            http,
            udp,
            tcp,
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end).unwrap_or(rest.len())])
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Server messages read (keepalives not counted), for `resume`.
    pub received: u64,
    /// The latest resume token (`session`/`resumed`); the `session`
    /// message itself is not returned to tests, which look at the meeting.
    pub session: Option<String>,
}

pub const WAIT: Duration = Duration::from_secs(5);

pub fn media() -> MediaState {
    MediaState {
        microphone: true,
        camera: true,
        screen: false,
    }
}

impl Client {
    pub async fn connect(server: &Server) -> Client {
        Client::connect_at(server.http).await
    }

    /// Connects to a server by address (for tasks that do not hold the `Server`).
    pub async fn connect_at(http: SocketAddr) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
            .await
            .expect("websocket connects");
        Client {
            ws,
            received: 0,
            session: None,
        }
    }

    /// Connects and joins; returns the client and its welcome.
    pub async fn join(server: &Server, room: &str, name: &str) -> (Client, ServerMessage) {
        Client::join_at(server.http, room, name).await
    }

    /// [`Client::join`] by address.
    pub async fn join_at(http: SocketAddr, room: &str, name: &str) -> (Client, ServerMessage) {
        let mut client = Client::connect_at(http).await;
        client
            .send(&ClientMessage::Join {
                room: room.into(),
                name: name.into(),
                media: media(),
            })
            .await;
        let welcome = client.recv().await;
        assert!(
            matches!(welcome, ServerMessage::Welcome { .. }),
            "expected welcome, got {welcome:?}"
        );
        (client, welcome)
    }

    pub async fn send(&mut self, message: &ClientMessage) {
        let json = serde_json::to_string(message).expect("serializes");
        self.send_text(json).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("websocket send");
    }

    /// Sends; an error (the server closed us) instead of a panic.
    pub async fn send_checked(&mut self, message: &ClientMessage) -> Result<(), String> {
        let json = serde_json::to_string(message).expect("serializes");
        self.send_raw(Message::text(json)).await
    }

    pub async fn send_raw(&mut self, message: Message) -> Result<(), String> {
        self.ws.send(message).await.map_err(|e| e.to_string())
    }

    /// The next server message, or panics after `WAIT`.
    pub async fn recv(&mut self) -> ServerMessage {
        self.try_recv(WAIT).await.expect("a server message in time")
    }

    /// The next server message within `wait`; `None` on timeout or close.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<ServerMessage> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    match serde_json::from_str(&text).expect("server sends valid messages") {
                        // Liveness only; tests look at what the server says.
                        ServerMessage::Keepalive => continue,
                        ServerMessage::Session { resume } => {
                            self.received += 1;
                            self.session = Some(resume);
                            continue;
                        }
                        message => {
                            self.received += 1;
                            return Some(message);
                        }
                    }
                }
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    /// Skips messages until one matches.
    pub async fn recv_until(
        &mut self,
        what: &str,
        mut want: impl FnMut(&ServerMessage) -> bool,
    ) -> ServerMessage {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.try_recv(left).await {
                Some(m) if want(&m) => return m,
                Some(_) => continue,
                None => break,
            }
        }
        panic!("no {what} arrived within {WAIT:?}");
    }

    /// Waits for an offer and answers it like a browser would, using str0m as the peer.
    pub async fn answer_next_offer(
        &mut self,
        peer: &mut str0m::Rtc,
    ) -> Vec<conclave_protocol::TrackMapping> {
        let ServerMessage::Offer { sdp, tracks } = self
            .recv_until("offer", |m| matches!(m, ServerMessage::Offer { .. }))
            .await
        else {
            unreachable!()
        };
        let offer =
            str0m::change::SdpOffer::from_sdp_string(&sdp).expect("server offers valid SDP");
        let answer = peer
            .sdp_api()
            .accept_offer(offer)
            .expect("a peer accepts the server's offer");
        self.send(&ClientMessage::Answer {
            sdp: answer.to_sdp_string(),
        })
        .await;
        tracks
    }

    /// Ends the connection the way a network change does to the server:
    /// the TCP connection is reset, with no WebSocket close.
    pub fn break_connection(self) {
        if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            socket2::SockRef::from(tcp)
                .set_linger(Some(Duration::ZERO))
                .expect("linger 0");
        }
        drop(self);
    }

    /// Closes the connection without a leave message, as a closed tab
    /// does. A FIN goes first and everything the server still sends is read,
    /// so closing sends no reset: the server takes a FIN as leaving, while a
    /// reset would keep the session open for a resume (`RESUME_GRACE`).
    pub async fn hang_up(mut self) {
        if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            socket2::SockRef::from(tcp)
                .shutdown(std::net::Shutdown::Write)
                .expect("shutdown");
        }
        assert!(
            self.is_closed_within(WAIT).await,
            "the server did not close a hung-up connection within {WAIT:?}"
        );
    }

    /// Whether the server closed this connection within `wait`.
    pub async fn is_closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }
}

pub fn publish_count(tracks: &[conclave_protocol::TrackMapping]) -> usize {
    tracks
        .iter()
        .filter(|t| t.direction == TrackDirection::Publish)
        .count()
}

pub fn error_code(message: &ServerMessage) -> Option<conclave_protocol::ErrorCode> {
    match message {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// A str0m peer playing the browser's part, with its own loopback UDP socket.
pub struct MediaPeer {
    pub rtc: str0m::Rtc,
    pub socket: std::net::UdpSocket,
}

impl MediaPeer {
    pub fn new() -> MediaPeer {
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .expect("read timeout");
        let mut rtc = str0m::Rtc::builder().build(Instant::now());
        let local = socket.local_addr().expect("local addr");
        rtc.add_local_candidate(str0m::Candidate::host(local, "udp").expect("candidate"));
        MediaPeer { rtc, socket }
    }

    /// Drives ICE and DTLS until connected, or `None` after `wait`.
    pub fn connect(&mut self, wait: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut buf = vec![0u8; 2000];
        while start.elapsed() < wait {
            loop {
                match self.rtc.poll_output().ok()? {
                    str0m::Output::Timeout(_) => break,
                    str0m::Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    str0m::Output::Event(str0m::Event::Connected) => return Some(start.elapsed()),
                    str0m::Output::Event(_) => {}
                }
            }
            let local = self.socket.local_addr().ok()?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, source)) => {
                    let Ok(contents) = buf[..n].try_into() else {
                        continue;
                    };
                    let input = str0m::Input::Receive(
                        Instant::now(),
                        str0m::net::Receive {
                            proto: str0m::net::Protocol::Udp,
                            source,
                            destination: local,
                            contents,
                        },
                    );
                    let _ = self.rtc.handle_input(input);
                }
                Err(_) => {
                    let _ = self.rtc.handle_input(str0m::Input::Timeout(Instant::now()));
                }
            }
        }
        None
    }
}
