//! Where Conclave listens and what it announces, from flags, environment
//! variables or a TOML file (in that order of precedence), with defaults
//! that need no configuration on one machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    name = "conclave",
    version,
    about = "End-to-end encrypted video meetings: one binary."
)]
pub struct Cli {
    /// HTTP(S) and WebSocket listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "CONCLAVE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The single UDP port for all media [default: 10000].
    #[arg(long, env = "CONCLAVE_UDP_PORT")]
    pub udp_port: Option<u16>,
    /// IP address announced to browsers in ICE candidates [default: the listen
    /// address, or this machine's first LAN address when listening on 0.0.0.0].
    #[arg(long, env = "CONCLAVE_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// PEM certificate for HTTPS (with --tls-key). Without them, a non-loopback
    /// listener uses a self-signed certificate generated on first start.
    #[arg(long, env = "CONCLAVE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "CONCLAVE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Where the generated certificate is kept [default: ./conclave-data].
    #[arg(long, env = "CONCLAVE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Most participants in one room; the next one to join is told the
    /// meeting is full [default: 100].
    #[arg(long, env = "CONCLAVE_MAX_PARTICIPANTS")]
    pub max_participants: Option<u32>,
    /// A TOML file with any of the settings above (snake_case keys).
    #[arg(long, env = "CONCLAVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// TESTS ONLY: behave like a malicious server that tries to add every
    /// knocking participant to the group with its own Add proposal (members
    /// must refuse). Not in the config file, on purpose, and only in a binary
    /// built with the `test-modes` feature.
    #[cfg(feature = "test-modes")]
    #[arg(long, hide = true, env = "CONCLAVE_TEST_GHOST_ADDS")]
    pub test_ghost_adds: bool,
    /// TESTS ONLY: label each publisher's media, in offers, as another
    /// publisher's (members must not play it under the wrong name).
    #[cfg(feature = "test-modes")]
    #[arg(long, hide = true, env = "CONCLAVE_TEST_MISLABEL_MEDIA")]
    pub test_mislabel_media: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    udp_port: Option<u16>,
    public_ip: Option<IpAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    max_participants: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP: only on loopback, which browsers treat as a secure context.
    Off,
    /// Given certificate and key files.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate kept in the data directory.
    Generated { dir: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where the UDP socket binds.
    pub udp_bind: SocketAddr,
    /// What ICE candidates announce.
    pub udp_public: SocketAddr,
    pub tls: Tls,
    /// Most participants one room admits.
    pub max_participants: usize,
    #[cfg(feature = "test-modes")]
    pub test_ghost_adds: bool,
    #[cfg(feature = "test-modes")]
    pub test_mislabel_media: bool,
}

impl Config {
    pub fn resolve(cli: Cli) -> Result<Config, String> {
        let file = match &cli.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let listen = cli
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)));
        let udp_port = cli.udp_port.or(file.udp_port).unwrap_or(10000);
        let public_ip = match cli.public_ip.or(file.public_ip) {
            Some(ip) => ip,
            None if listen.ip().is_unspecified() => first_lan_address().ok_or(
                "listening on all interfaces, but no LAN address was found: set --public-ip",
            )?,
            None => listen.ip(),
        };
        // Bind media exactly where it is announced when that address is this
        // machine's (loopback, a LAN address); behind NAT the announced
        // address is not local, so bind every interface.
        let udp_ip = if listen.ip().is_unspecified() || !is_local_address(public_ip) {
            unspecified_like(public_ip)
        } else {
            public_ip
        };
        let udp_bind = SocketAddr::new(udp_ip, udp_port);
        let tls = match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Tls::Files { cert, key },
            (Some(_), None) | (None, Some(_)) => {
                return Err("--tls-cert and --tls-key go together".into())
            }
            (None, None) if listen.ip().is_loopback() => Tls::Off,
            (None, None) => Tls::Generated {
                dir: cli
                    .data_dir
                    .or(file.data_dir)
                    .unwrap_or_else(|| PathBuf::from("conclave-data")),
            },
        };
        let max_participants = match cli.max_participants.or(file.max_participants) {
            Some(0) => return Err("max_participants must be at least 1".into()),
            Some(n) => n as usize,
            None => crate::rooms::MAX_PARTICIPANTS_PER_ROOM,
        };
        Ok(Config {
            listen,
            udp_bind,
            udp_public: SocketAddr::new(public_ip, udp_port),
            tls,
            max_participants,
            #[cfg(feature = "test-modes")]
            test_ghost_adds: cli.test_ghost_adds,
            #[cfg(feature = "test-modes")]
            test_mislabel_media: cli.test_mislabel_media,
        })
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

fn is_local_address(ip: IpAddr) -> bool {
    ip.is_loopback()
        || if_addrs::get_if_addrs().is_ok_and(|interfaces| interfaces.iter().any(|i| i.ip() == ip))
}

fn first_lan_address() -> Option<IpAddr> {
    let interfaces = if_addrs::get_if_addrs().ok()?;
    interfaces
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("conclave").chain(args.iter().copied()))
    }

    #[test]
    fn no_configuration_means_loopback_http_on_8080() {
        let config = Config::resolve(cli(&[])).expect("defaults resolve");
        assert_eq!(config.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(config.udp_public, "127.0.0.1:10000".parse().expect("addr"));
        assert_eq!(config.tls, Tls::Off);
        assert_eq!(config.max_participants, 100);
    }

    #[test]
    fn the_room_size_limit_comes_from_a_flag_or_the_file_and_is_at_least_one() {
        let config = Config::resolve(cli(&["--max-participants", "2"])).expect("flag");
        assert_eq!(config.max_participants, 2);
        let dir = std::env::temp_dir().join(format!("conclave-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("conclave.toml");
        std::fs::write(&path, "max_participants = 7\n").expect("write");
        let file = path.to_str().expect("utf8");
        let config = Config::resolve(cli(&["--config", file])).expect("file");
        assert_eq!(config.max_participants, 7);
        let config = Config::resolve(cli(&["--config", file, "--max-participants", "4"]))
            .expect("flag wins");
        assert_eq!(config.max_participants, 4);
        let err = Config::resolve(cli(&["--max-participants", "0"])).expect_err("0 refused");
        assert!(err.contains("at least 1"), "{err}");
        std::fs::write(&path, "max_participants = 0\n").expect("write");
        let err = Config::resolve(cli(&["--config", file])).expect_err("0 refused");
        assert!(err.contains("at least 1"), "{err}");
    }

    #[test]
    fn a_lan_listener_gets_https_and_announces_its_public_ip() {
        let config = Config::resolve(cli(&[
            "--listen",
            "0.0.0.0:8443",
            "--public-ip",
            "192.0.2.7",
            "--udp-port",
            "4000",
        ]))
        .expect("resolves");
        assert_eq!(
            config.udp_bind,
            "0.0.0.0:4000".parse().expect("addr"),
            "192.0.2.7 is not local: NAT"
        );
        assert_eq!(config.udp_public, "192.0.2.7:4000".parse().expect("addr"));
        assert!(matches!(config.tls, Tls::Generated { .. }));
    }

    #[test]
    fn media_binds_where_it_is_announced_when_that_address_is_local() {
        let config = Config::resolve(cli(&["--public-ip", "127.0.0.1", "--udp-port", "0"]))
            .expect("resolves");
        assert_eq!(config.udp_bind, "127.0.0.1:0".parse().expect("addr"));
        let config = Config::resolve(cli(&[
            "--listen",
            "127.0.0.1:8080",
            "--public-ip",
            "127.0.0.2",
        ]))
        .expect("resolves");
        assert_eq!(
            config.udp_bind.ip(),
            "127.0.0.2".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn a_toml_file_sets_what_flags_leave_open() {
        let dir = std::env::temp_dir().join(format!("conclave-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("conclave.toml");
        std::fs::write(&path, "udp_port = 5555\nlisten = \"127.0.0.1:9000\"\n").expect("write");
        let config = Config::resolve(cli(&[
            "--config",
            path.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:9001",
        ]))
        .expect("resolves");
        assert_eq!(config.listen.port(), 9001, "flags win over the file");
        assert_eq!(config.udp_public.port(), 5555);
        std::fs::write(&path, "udp_prot = 1\n").expect("write");
        let err = Config::resolve(cli(&["--config", path.to_str().expect("utf8")]))
            .expect_err("typo refused");
        assert!(err.contains("udp_prot"), "{err}");
    }
}
