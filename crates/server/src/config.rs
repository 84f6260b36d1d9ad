//! Where Conclave listens and what it announces, from flags, environment
//! variables or a TOML file (in that order of precedence), with defaults
//! that need no configuration on one machine.
//!
//! The environment is an explicit input of [`Config::resolve`] (the binary
//! passes the process's), not something clap reads behind our back: tests
//! give each case its own variables, so neither a developer's `CONCLAVE_*`
//! settings nor a test running in parallel can change a result.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::Parser;
use serde::Deserialize;

/// Open connections one address may hold by default (several tabs and
/// devices behind one NAT fit; one stranger cannot hold a server's worth).
pub const DEFAULT_CONNECTIONS_PER_ADDRESS: usize = 20;

#[derive(Debug, Parser)]
#[command(
    name = "conclave",
    version,
    about = "End-to-end encrypted video meetings: one binary.",
    after_help = "Every setting above can also be given as an environment variable: \
CONCLAVE_LISTEN, CONCLAVE_UDP_PORT, CONCLAVE_TCP_PORT, CONCLAVE_PUBLIC_IP, CONCLAVE_TLS_CERT, CONCLAVE_TLS_KEY, \
CONCLAVE_DATA_DIR, CONCLAVE_MAX_PARTICIPANTS, CONCLAVE_MAX_CONNECTIONS_PER_ADDRESS, \
CONCLAVE_MEDIA_THREADS, CONCLAVE_CONFIG. \
Flags win over variables, variables over the --config file.\n\n\
Other commands: `conclave client-hashes` prints the SHA-256 of this release's web client; \
`conclave check-client URL [--expected MANIFEST]` checks that a server serves exactly that client."
)]
pub struct Cli {
    /// HTTP(S) and WebSocket listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The single UDP port for all media [default: 10000].
    #[arg(long)]
    pub udp_port: Option<u16>,
    /// The TCP port for media of browsers whose UDP is blocked (ICE-TCP,
    /// RFC 6544) [default: the UDP port's number; 0: one the OS picks].
    #[arg(long)]
    pub tcp_port: Option<u16>,
    /// IP address announced to browsers in ICE candidates [default: the listen
    /// address, or this machine's first LAN address when listening on 0.0.0.0].
    #[arg(long)]
    pub public_ip: Option<IpAddr>,
    /// PEM certificate for HTTPS (with --tls-key). Without them, a non-loopback
    /// listener uses a self-signed certificate generated on first start.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Where the generated certificate is kept [default: ./conclave-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Most participants in one room; the next one to join is told the
    /// meeting is full [default: 100].
    #[arg(long)]
    pub max_participants: Option<u32>,
    /// Most open connections (WebSockets) from one address (IPv6: one /64);
    /// 0 for no limit [default: 20, or none on a loopback listener, where a
    /// reverse proxy makes every client look alike].
    #[arg(long)]
    pub max_connections_per_address: Option<u32>,
    /// Threads forwarding media, each owning a share of the participants
    /// (up to 64) [default: the CPUs this process may run on].
    #[arg(long)]
    pub media_threads: Option<u32>,
    /// A TOML file with any of the settings above (snake_case keys).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// TESTS ONLY: behave like a malicious server that tries to add every
    /// knocking participant to the group with its own Add proposal (members
    /// must refuse). Not in the config file, on purpose, and only in a binary
    /// built with the `test-modes` feature.
    #[cfg(feature = "test-modes")]
    #[arg(long, hide = true)]
    pub test_ghost_adds: bool,
    /// TESTS ONLY: label each publisher's media, in offers, as another
    /// publisher's (members must not play it under the wrong name).
    #[cfg(feature = "test-modes")]
    #[arg(long, hide = true)]
    pub test_mislabel_media: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    udp_port: Option<u16>,
    tcp_port: Option<u16>,
    public_ip: Option<IpAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    max_participants: Option<u32>,
    max_connections_per_address: Option<u32>,
    media_threads: Option<u32>,
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
    /// Where the ICE-TCP listener binds.
    pub tcp_bind: SocketAddr,
    /// What the passive ICE-TCP candidate announces.
    pub tcp_public: SocketAddr,
    pub tls: Tls,
    /// Most participants one room admits.
    pub max_participants: usize,
    /// Most WebSockets from one address (0: no limit).
    pub max_connections_per_address: usize,
    /// Media threads (shards), 1 to 64.
    pub media_threads: usize,
    #[cfg(feature = "test-modes")]
    pub test_ghost_adds: bool,
    #[cfg(feature = "test-modes")]
    pub test_mislabel_media: bool,
}

/// Where environment variables come from: the process's in the binary
/// ([`Config::from_process`]), an explicit map in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

impl Cli {
    /// Fills what the command line left open from `env`, as clap's `env`
    /// attribute would: a variable is read (and must parse) only for a
    /// setting no flag gave.
    fn with_env(self, env: Env) -> Result<Cli, String> {
        Ok(Cli {
            listen: parsed(env, "CONCLAVE_LISTEN", self.listen)?,
            udp_port: parsed(env, "CONCLAVE_UDP_PORT", self.udp_port)?,
            tcp_port: parsed(env, "CONCLAVE_TCP_PORT", self.tcp_port)?,
            public_ip: parsed(env, "CONCLAVE_PUBLIC_IP", self.public_ip)?,
            tls_cert: path(env, "CONCLAVE_TLS_CERT", self.tls_cert)?,
            tls_key: path(env, "CONCLAVE_TLS_KEY", self.tls_key)?,
            data_dir: path(env, "CONCLAVE_DATA_DIR", self.data_dir)?,
            max_participants: parsed(env, "CONCLAVE_MAX_PARTICIPANTS", self.max_participants)?,
            max_connections_per_address: parsed(
                env,
                "CONCLAVE_MAX_CONNECTIONS_PER_ADDRESS",
                self.max_connections_per_address,
            )?,
            media_threads: parsed(env, "CONCLAVE_MEDIA_THREADS", self.media_threads)?,
            config: path(env, "CONCLAVE_CONFIG", self.config)?,
            #[cfg(feature = "test-modes")]
            test_ghost_adds: self.test_ghost_adds
                || parsed(env, "CONCLAVE_TEST_GHOST_ADDS", None)?.unwrap_or(false),
            #[cfg(feature = "test-modes")]
            test_mislabel_media: self.test_mislabel_media
                || parsed(env, "CONCLAVE_TEST_MISLABEL_MEDIA", None)?.unwrap_or(false),
        })
    }
}

fn parsed<T: FromStr>(env: Env, name: &str, flag: Option<T>) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    if flag.is_some() {
        return Ok(flag);
    }
    let Some(raw) = env(name) else {
        return Ok(None);
    };
    let text = raw
        .into_string()
        .map_err(|raw| format!("{name}={raw:?}: not valid UTF-8"))?;
    text.parse()
        .map(Some)
        .map_err(|e| format!("{name}={text:?}: {e}"))
}

fn path(env: Env, name: &str, flag: Option<PathBuf>) -> Result<Option<PathBuf>, String> {
    if flag.is_some() {
        return Ok(flag);
    }
    match env(name) {
        Some(raw) if raw.is_empty() => Err(format!("{name} is set but empty")),
        raw => Ok(raw.map(PathBuf::from)),
    }
}

impl Config {
    /// Resolves `cli` with the process's environment variables.
    pub fn from_process(cli: Cli) -> Result<Config, String> {
        Config::resolve(cli, &|name| std::env::var_os(name))
    }

    /// Flags, then `env`, then the TOML file (`--config` or `CONCLAVE_CONFIG`),
    /// then defaults.
    pub fn resolve(cli: Cli, env: Env) -> Result<Config, String> {
        let cli = cli.with_env(env)?;
        let file = match &cli.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let listen = cli
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)));
        let udp_port = cli.udp_port.or(file.udp_port).unwrap_or(10000);
        // TCP and UDP ports are separate spaces: one number for both is
        // one number to open in a firewall.
        let tcp_port = cli.tcp_port.or(file.tcp_port).unwrap_or(udp_port);
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
        let max_connections_per_address = match cli
            .max_connections_per_address
            .or(file.max_connections_per_address)
        {
            Some(n) => n as usize,
            None if listen.ip().is_loopback() => 0,
            None => DEFAULT_CONNECTIONS_PER_ADDRESS,
        };
        let media_threads = match cli.media_threads.or(file.media_threads) {
            Some(n @ 1..=64) => n as usize,
            Some(_) => return Err("media_threads must be from 1 to 64".into()),
            // Respects the CPU affinity the process was started with
            // (taskset, a container's cpuset).
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(64),
        };
        Ok(Config {
            listen,
            udp_bind,
            udp_public: SocketAddr::new(public_ip, udp_port),
            tcp_bind: SocketAddr::new(udp_ip, tcp_port),
            tcp_public: SocketAddr::new(public_ip, tcp_port),
            tls,
            max_participants,
            max_connections_per_address,
            media_threads,
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
    use std::collections::HashMap;

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("conclave").chain(args.iter().copied()))
    }

    /// Resolves `args` with exactly the variables in `vars`, whatever the
    /// process environment holds.
    fn resolve_with(args: &[&str], vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: HashMap<&str, OsString> = vars.iter().map(|&(k, v)| (k, v.into())).collect();
        Config::resolve(cli(args), &|name| vars.get(name).cloned())
    }

    fn resolve(args: &[&str]) -> Result<Config, String> {
        resolve_with(args, &[])
    }

    #[test]
    fn media_threads_default_to_the_cpus_and_are_bounded() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(resolve(&[]).expect("defaults").media_threads, cpus.min(64));
        assert_eq!(
            resolve(&["--media-threads", "3"])
                .expect("flag")
                .media_threads,
            3
        );
        let config = resolve_with(&[], &[("CONCLAVE_MEDIA_THREADS", "2")]).expect("variable");
        assert_eq!(config.media_threads, 2);
        for wrong in ["0", "65"] {
            assert!(resolve(&["--media-threads", wrong]).is_err(), "{wrong}");
        }
    }

    #[test]
    fn the_tcp_port_follows_the_udp_port_unless_set_by_flag_variable_or_file() {
        let port = |c: Config| (c.udp_public.port(), c.tcp_public.port(), c.tcp_bind.port());
        assert_eq!(
            port(resolve(&["--udp-port", "4000"]).expect("udp")),
            (4000, 4000, 4000)
        );
        assert_eq!(
            port(resolve(&["--udp-port", "0"]).expect("udp 0")),
            (0, 0, 0),
            "both chosen by the OS"
        );
        assert_eq!(
            port(resolve(&["--udp-port", "4000", "--tcp-port", "443"]).expect("flag")),
            (4000, 443, 443)
        );
        assert_eq!(
            port(resolve_with(&[], &[("CONCLAVE_TCP_PORT", "4443")]).expect("variable")),
            (10000, 4443, 4443)
        );
        let path = config_file("tcp_port", "tcp_port = 5443\n");
        let file = path.to_str().expect("utf-8");
        assert_eq!(
            port(resolve(&["--config", file]).expect("file")),
            (10000, 5443, 5443)
        );
        assert!(resolve_with(&[], &[("CONCLAVE_TCP_PORT", "http")]).is_err());
    }

    /// A TOML file of its own for each test (tests run in parallel).
    fn config_file(test: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("conclave-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("{test}.toml"));
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn no_configuration_means_loopback_http_on_8080() {
        let config = resolve(&[]).expect("defaults resolve");
        assert_eq!(config.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(config.udp_public, "127.0.0.1:10000".parse().expect("addr"));
        assert_eq!(
            config.tcp_public,
            "127.0.0.1:10000".parse().expect("addr"),
            "ICE-TCP on the UDP port's number"
        );
        assert_eq!(
            config.tcp_bind,
            config.udp_bind.to_string().parse().expect("addr")
        );
        assert_eq!(config.tls, Tls::Off);
        assert_eq!(config.max_participants, 100);
        assert_eq!(config.max_connections_per_address, 0, "none on loopback");
    }

    #[test]
    fn connections_per_address_are_limited_off_loopback_unless_configured() {
        let lan = ["--listen", "0.0.0.0:8443", "--public-ip", "192.0.2.7"];
        assert_eq!(
            resolve(&lan).expect("lan").max_connections_per_address,
            DEFAULT_CONNECTIONS_PER_ADDRESS
        );
        let mut unlimited = lan.to_vec();
        unlimited.extend(["--max-connections-per-address", "0"]);
        assert_eq!(
            resolve(&unlimited)
                .expect("flag")
                .max_connections_per_address,
            0
        );
        let config =
            resolve_with(&[], &[("CONCLAVE_MAX_CONNECTIONS_PER_ADDRESS", "3")]).expect("variable");
        assert_eq!(config.max_connections_per_address, 3);
        let path = config_file("per_address", "max_connections_per_address = 5\n");
        let file = path.to_str().expect("utf-8");
        assert_eq!(
            resolve(&["--config", file])
                .expect("file")
                .max_connections_per_address,
            5
        );
    }

    #[test]
    fn the_room_size_limit_comes_from_a_flag_a_variable_or_the_file_and_is_at_least_one() {
        assert_eq!(
            resolve(&["--max-participants", "2"])
                .expect("flag")
                .max_participants,
            2
        );
        let config = resolve_with(&[], &[("CONCLAVE_MAX_PARTICIPANTS", "3")]).expect("variable");
        assert_eq!(config.max_participants, 3);
        let path = config_file("max_participants", "max_participants = 7\n");
        let file = path.to_str().expect("utf8");
        assert_eq!(
            resolve(&["--config", file]).expect("file").max_participants,
            7
        );
        assert_eq!(
            resolve(&["--config", file, "--max-participants", "4"])
                .expect("flag wins")
                .max_participants,
            4
        );
        for zero in [
            resolve(&["--max-participants", "0"]),
            resolve_with(&[], &[("CONCLAVE_MAX_PARTICIPANTS", "0")]),
            resolve(&[
                "--config",
                config_file("max_participants_0", "max_participants = 0\n")
                    .to_str()
                    .expect("utf8"),
            ]),
        ] {
            let err = zero.expect_err("0 refused");
            assert!(err.contains("at least 1"), "{err}");
        }
    }

    #[test]
    fn a_lan_listener_gets_https_and_announces_its_public_ip() {
        let config = resolve(&[
            "--listen",
            "0.0.0.0:8443",
            "--public-ip",
            "192.0.2.7",
            "--udp-port",
            "4000",
        ])
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
        let config = resolve(&["--public-ip", "127.0.0.1", "--udp-port", "0"]).expect("resolves");
        assert_eq!(config.udp_bind, "127.0.0.1:0".parse().expect("addr"));
        let config =
            resolve(&["--listen", "127.0.0.1:8080", "--public-ip", "127.0.0.2"]).expect("resolves");
        assert_eq!(
            config.udp_bind.ip(),
            "127.0.0.2".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn a_toml_file_sets_what_flags_leave_open() {
        let path = config_file(
            "flags-leave-open",
            "udp_port = 5555\nlisten = \"127.0.0.1:9000\"\n",
        );
        let config = resolve(&[
            "--config",
            path.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:9001",
        ])
        .expect("resolves");
        assert_eq!(config.listen.port(), 9001, "flags win over the file");
        assert_eq!(config.udp_public.port(), 5555);
        let path = config_file("typo", "udp_prot = 1\n");
        let err = resolve(&["--config", path.to_str().expect("utf8")]).expect_err("typo refused");
        assert!(err.contains("udp_prot"), "{err}");
    }

    /// Flags > environment > file > defaults, for the listen address, the
    /// media port, the announced IP and the certificate directory: each level
    /// is added on top of the ones below and must win over all of them.
    #[test]
    fn each_level_overrides_the_one_below_for_every_setting() {
        let file = config_file(
            "levels",
            "listen = \"0.0.0.0:9100\"\nudp_port = 5100\npublic_ip = \"192.0.2.1\"\n\
             data_dir = \"from-file\"\n",
        );
        let file = file.to_str().expect("utf8");
        let env = [
            ("CONCLAVE_LISTEN", "0.0.0.0:9200"),
            ("CONCLAVE_UDP_PORT", "5200"),
            ("CONCLAVE_PUBLIC_IP", "192.0.2.2"),
            ("CONCLAVE_DATA_DIR", "from-env"),
        ];
        let flags = [
            "--listen",
            "0.0.0.0:9300",
            "--udp-port",
            "5300",
            "--public-ip",
            "192.0.2.3",
            "--data-dir",
            "from-flags",
        ];
        let expect = |config: Config, port: u16, udp: u16, ip: &str, dir: &str, level: &str| {
            assert_eq!(config.listen.port(), port, "listen from {level}");
            assert_eq!(
                config.udp_public,
                SocketAddr::new(ip.parse().expect("ip"), udp),
                "media port and public IP from {level}"
            );
            assert_eq!(
                config.tls,
                Tls::Generated { dir: dir.into() },
                "data dir from {level}"
            );
        };

        let defaults = resolve(&[]).expect("resolves");
        assert_eq!(defaults.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(
            defaults.udp_public,
            "127.0.0.1:10000".parse().expect("addr")
        );
        // The default data directory shows only on a non-loopback listener.
        let lan = resolve(&["--listen", "0.0.0.0:1", "--public-ip", "192.0.2.9"]).expect("ok");
        assert_eq!(
            lan.tls,
            Tls::Generated {
                dir: "conclave-data".into()
            }
        );

        let from_file = resolve(&["--config", file]).expect("resolves");
        expect(from_file, 9100, 5100, "192.0.2.1", "from-file", "the file");

        let from_env = resolve_with(&["--config", file], &env).expect("resolves");
        expect(
            from_env,
            9200,
            5200,
            "192.0.2.2",
            "from-env",
            "the environment",
        );

        let mut args = vec!["--config", file];
        args.extend(flags);
        let from_flags = resolve_with(&args, &env).expect("resolves");
        expect(
            from_flags,
            9300,
            5300,
            "192.0.2.3",
            "from-flags",
            "the flags",
        );
    }

    /// Levels combine per setting: each comes from the highest level that sets it.
    #[test]
    fn each_setting_comes_from_the_highest_level_that_sets_it() {
        let file = config_file(
            "mixed",
            "listen = \"127.0.0.1:9100\"\nudp_port = 5100\npublic_ip = \"127.0.0.3\"\n",
        );
        let config = resolve_with(
            &[
                "--config",
                file.to_str().expect("utf8"),
                "--listen",
                "127.0.0.1:9300",
            ],
            &[("CONCLAVE_UDP_PORT", "5200")],
        )
        .expect("resolves");
        assert_eq!(
            config.listen,
            "127.0.0.1:9300".parse().expect("addr"),
            "flag"
        );
        assert_eq!(
            config.udp_public,
            "127.0.0.3:5200".parse().expect("addr"),
            "env port, file IP"
        );
        assert_eq!(config.udp_bind, "127.0.0.3:5200".parse().expect("addr"));
        assert_eq!(config.tls, Tls::Off, "default: loopback is plain HTTP");
    }

    /// CONCLAVE_CONFIG names the file when --config does not, and a variable
    /// is only read (and must only parse) for a setting no flag gives.
    #[test]
    fn the_environment_names_the_file_and_is_read_only_where_flags_are_silent() {
        let env_file = config_file("env-file", "udp_port = 5101\n");
        let flag_file = config_file("flag-file", "udp_port = 5102\n");
        let env_file = env_file.to_str().expect("utf8");
        let by_env = resolve_with(&[], &[("CONCLAVE_CONFIG", env_file)]).expect("resolves");
        assert_eq!(by_env.udp_public.port(), 5101);
        let by_flag = resolve_with(
            &["--config", flag_file.to_str().expect("utf8")],
            &[("CONCLAVE_CONFIG", env_file)],
        )
        .expect("resolves");
        assert_eq!(
            by_flag.udp_public.port(),
            5102,
            "--config wins over CONCLAVE_CONFIG"
        );

        let bad = [("CONCLAVE_LISTEN", "not-an-address")];
        let err = resolve_with(&[], &bad).expect_err("a bad variable is an error");
        assert!(err.contains("CONCLAVE_LISTEN"), "{err}");
        let config = resolve_with(&["--listen", "127.0.0.1:9"], &bad).expect("the flag wins");
        assert_eq!(config.listen.port(), 9);
    }
}
