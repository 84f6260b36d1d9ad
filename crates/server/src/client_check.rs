//! Checking the web client a server serves against this release's.
//!
//! A malicious server can serve a client that reads the invite secret from
//! the link (docs/security.md, "the served client"). Nothing in the browser
//! can stop that, but anyone can detect it: every release publishes the
//! SHA-256 of each embedded web asset (`conclave client-hashes`), and
//! `conclave check-client URL` downloads the page and every asset it loads
//! and compares them, byte for byte, with this binary's (or a published
//! manifest given with `--expected`).
//!
//! TLS certificates are not verified here on purpose: the check is about
//! the bytes, which a man in the middle could not change without failing
//! it. It proves only what was served to this check, at this time; a server
//! can serve others something else (targeted attacks stay possible).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::web::{Assets, CONTENT_SECURITY_POLICY};

/// At most this many files are fetched (today's client has five).
const MAX_FILES: usize = 64;
/// No asset of ours comes near this.
const MAX_RESPONSE_BYTES: usize = 32 << 20;
const USAGE: &str = "usage: conclave client-hashes\n       \
                     conclave check-client URL [--expected MANIFEST]";

/// Runs `client-hashes` or `check-client` if `args` (without the program
/// name) name one; returns the exit code, or `None` for a normal start.
pub async fn run_subcommand(args: &[String]) -> Option<i32> {
    match args.first().map(String::as_str) {
        Some("client-hashes") => {
            print!("{}", manifest_text(&embedded_manifest()));
            println!("# client digest {}", client_digest(&embedded_manifest()));
            Some(0)
        }
        Some("check-client") => Some(check_command(&args[1..]).await),
        _ => None,
    }
}

/// Path (as in web/dist, e.g. `assets/index-x.js`) → SHA-256.
type Manifest = BTreeMap<String, [u8; 32]>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The web client embedded in this binary.
pub fn embedded_manifest() -> Manifest {
    Assets::iter()
        .filter_map(|path| {
            let file = Assets::get(&path)?;
            Some((path.into_owned(), file.metadata.sha256_hash()))
        })
        .collect()
}

/// `sha256sum` format (`HASH  PATH`, sorted), so a web/dist folder can also be
/// checked with `sha256sum -c`.
fn manifest_text(m: &Manifest) -> String {
    m.iter()
        .map(|(path, hash)| format!("{}  {path}\n", hex(hash)))
        .collect()
}

/// One value to publish and compare: SHA-256 of the manifest text.
fn client_digest(m: &Manifest) -> String {
    hex(&Sha256::digest(manifest_text(m).as_bytes()))
}

/// Reads a manifest in `sha256sum` format; `#` lines are comments.
fn parse_manifest(text: &str) -> Result<Manifest, String> {
    let mut m = Manifest::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("line {}: expected `SHA256  PATH`", n + 1);
        let (hash, path) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let path = path.trim().trim_start_matches('*');
        if hash.len() != 64 || path.is_empty() {
            return Err(bad());
        }
        let mut h = [0u8; 32];
        for (i, byte) in h.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hash[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        m.insert(path.to_owned(), h);
    }
    if m.is_empty() {
        return Err("the manifest lists no files".into());
    }
    Ok(m)
}

async fn check_command(args: &[String]) -> i32 {
    let (url, expected) = match args {
        [url] => (url, None),
        [url, flag, file] if flag == "--expected" => (url, Some(file)),
        _ => {
            eprintln!("{USAGE}");
            return 2;
        }
    };
    let manifest = match expected {
        None => embedded_manifest(),
        Some(file) => match std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {file}: {e}"))
            .and_then(|t| parse_manifest(&t))
        {
            Ok(m) => m,
            Err(e) => {
                eprintln!("conclave: {e}");
                return 2;
            }
        },
    };
    if manifest.is_empty() {
        eprintln!("conclave: this binary was built without the web client; pass --expected");
        return 2;
    }
    let target = match Target::parse(url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("conclave: {e}");
            return 2;
        }
    };
    match check(&target, &manifest).await {
        Ok(report) => {
            print!("{}", report.text);
            if report.ok {
                println!(
                    "The client served at {url} is exactly this release's ({} files, client digest {}).",
                    report.checked,
                    client_digest(&manifest)
                );
                0
            } else {
                println!(
                    "The client served at {url} is NOT this release's: do not trust this server with your meetings' links."
                );
                1
            }
        }
        Err(e) => {
            eprintln!("conclave: could not check {url}: {e}");
            2
        }
    }
}

struct Report {
    ok: bool,
    checked: usize,
    text: String,
}

/// Fetches the page at the URL's path and every `/assets/…` file reachable
/// from it, and compares each with the manifest.
async fn check(target: &Target, manifest: &Manifest) -> Result<Report, String> {
    let mut report = Report {
        ok: true,
        checked: 0,
        text: String::new(),
    };
    let line = |report: &mut Report, ok: bool, what: &str, path: &str| {
        report.ok &= ok;
        report.text.push_str(&format!("{what:<22} {path}\n"));
    };
    let page = get(target, &target.path).await?;
    if page.csp.as_deref() != Some(CONTENT_SECURITY_POLICY) {
        line(
            &mut report,
            false,
            "DIFFERENT POLICY",
            "Content-Security-Policy header",
        );
    }
    let mut queue = VecDeque::from([("index.html".to_owned(), page.body)]);
    let mut seen = BTreeSet::from(["index.html".to_owned()]);
    while let Some((path, body)) = queue.pop_front() {
        report.checked += 1;
        let hash: [u8; 32] = Sha256::digest(&body).into();
        match manifest.get(&path) {
            Some(h) if *h == hash => line(&mut report, true, "ok", &path),
            Some(_) => line(&mut report, false, "DIFFERENT", &path),
            None => line(&mut report, false, "NOT IN THIS RELEASE", &path),
        }
        for next in asset_references(&body) {
            if seen.len() >= MAX_FILES {
                return Err(format!("the page loads more than {MAX_FILES} files"));
            }
            if seen.insert(next.clone()) {
                let fetched = get(target, &format!("/{next}")).await?;
                queue.push_back((next, fetched.body));
            }
        }
    }
    Ok(report)
}

/// `assets/NAME` for every `/assets/NAME` (Vite's absolute asset URLs) in a
/// file's text.
fn asset_references(body: &[u8]) -> Vec<String> {
    const MARK: &[u8] = b"/assets/";
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(pos) = body[i..].windows(MARK.len()).position(|w| w == MARK) {
        let start = i + pos + MARK.len();
        let len = body[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            .count();
        if len > 0 {
            out.push(format!(
                "assets/{}",
                String::from_utf8_lossy(&body[start..start + len])
            ));
        }
        i = start + len;
    }
    out
}

/// Where to fetch from.
struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url}: expected an http:// or https:// address"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // The fragment (the invite secret) is never sent to a server.
        let path = path.split('#').next().unwrap_or("/");
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, rest) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url}: bad IPv6 address"))?;
            (host, rest.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(p) => p.parse().map_err(|_| format!("{url}: bad port"))?,
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Target {
            tls,
            host: host.to_owned(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        })
    }
}

struct Fetched {
    body: Vec<u8>,
    csp: Option<String>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A plain HTTP/1.1 GET (one request per connection).
async fn get(target: &Target, path: &str) -> Result<Fetched, String> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", target.host, target.port))?;
    let mut stream: Box<dyn Stream> = if target.tls {
        Box::new(tls_connect(tcp, &target.host).await?)
    } else {
        Box::new(tcp)
    };
    let host = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\nConnection: close\r\nUser-Agent: conclave-check-client\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    if raw.len() > MAX_RESPONSE_BYTES {
        return Err(format!("GET {path}: the response is larger than any asset"));
    }
    parse_response(&raw).map_err(|e| format!("GET {path}: {e}"))
}

fn parse_response(raw: &[u8]) -> Result<Fetched, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not text")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("the server answered `{status}`"));
    }
    let mut csp = None;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-security-policy" => csp = Some(value.to_owned()),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-length" => length = value.parse::<usize>().ok(),
            "content-encoding" if !value.eq_ignore_ascii_case("identity") => {
                return Err(format!("unexpected content encoding {value}"));
            }
            _ => {}
        }
    }
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        body.get(..n)
            .ok_or("the body is shorter than announced")?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok(Fetched { body, csp })
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size = std::str::from_utf8(&body[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or("bad chunk size")?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).ok_or("truncated chunk")?);
        body = body.get(size + 2..).ok_or("truncated chunk")?;
    }
}

async fn tls_connect(
    tcp: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    use rustls::pki_types::ServerName;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))
}

/// Accepts any certificate (see the module docs: the bytes are what is
/// checked), but still checks the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_without_their_fragment() {
        let t = Target::parse("https://meet.example.org/team#s=abc").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (true, "meet.example.org", 443, "/team")
        );
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/")
        );
        let t = Target::parse("http://[::1]:9000/r").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("http://host:99999/").is_err());
    }

    #[test]
    fn manifests_round_trip_and_bad_lines_are_refused() {
        let mut m = Manifest::new();
        m.insert("index.html".into(), [7; 32]);
        m.insert("assets/a-1.js".into(), [9; 32]);
        assert_eq!(parse_manifest(&manifest_text(&m)), Ok(m));
        assert!(parse_manifest("abc  index.html").is_err());
        assert!(parse_manifest("# only a comment\n").is_err());
    }

    #[test]
    fn asset_references_and_chunked_bodies_are_read() {
        let html = br#"<script src="/assets/index-Ab_1.js"></script><link href="/assets/x.css">"/assets/""#;
        assert_eq!(
            asset_references(html),
            ["assets/index-Ab_1.js", "assets/x.css"]
        );
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"9\r\nabc\r\n").is_err());
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiXX").unwrap();
        assert_eq!(r.body, b"hi");
        assert!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
    }
}
