//! What the benchmark reads from and asks of the operating system: CPU time
//! from `/proc/<pid>/stat`, kernel drops from `/proc/net/udp`, CPU pinning,
//! child processes that announce their address on their first line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Kernel socket buffers asked for on every benchmark socket (the server asks
/// for the same; Linux caps it at net.core.rmem_max / wmem_max).
pub const SOCKET_BUFFER: usize = 4 << 20;

/// User plus system CPU time of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name may hold spaces and parentheses; fields follow the last ')'.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| format!("{path}: unexpected contents"))?;
    let mut fields = rest.split_whitespace();
    // After the name: state (field 3) … utime (14), stime (15).
    let utime: u64 = fields
        .nth(11)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| format!("{path}: no utime"))?;
    let stime: u64 = fields
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| format!("{path}: no stime"))?;
    Ok((utime + stime) as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Datagrams the kernel dropped on the IPv4 UDP sockets bound to these ports
/// (receive buffer full), summed.
pub fn udp_drops(ports: &[u16]) -> u64 {
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port = cols.get(1)?.rsplit(':').next()?;
            let port = u16::from_str_radix(port, 16).ok()?;
            if !ports.contains(&port) {
                return None;
            }
            cols.last()?.parse::<u64>().ok()
        })
        .sum()
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Restricts this process (threads created from now on, and the calling
/// thread) to every CPU but `core`; with one CPU, to that one.
pub fn pin_self_away_from(core: usize) -> Result<(), String> {
    let cpus: Vec<usize> = (0..cpu_count()).filter(|&c| c != core).collect();
    let cpus = if cpus.is_empty() { vec![core] } else { cpus };
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it, and
    // sched_setaffinity reads it for its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "sched_setaffinity: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// How long a child may take to print its first line.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A child process, killed when dropped.
pub struct Spawned {
    child: Child,
    pub first_line: String,
}

impl Spawned {
    /// Starts `program args…`, under `taskset -c core` when pinned, and
    /// waits for its first line of output.
    pub fn start(
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
        pin: Option<usize>,
    ) -> Result<Spawned, String> {
        let mut command = match pin {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        // Read on a thread, so a child that never speaks cannot hang us.
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
        }
        let first_line = rx.recv_timeout(READY_WAIT).unwrap_or_default();
        if first_line.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{} said nothing within {READY_WAIT:?}",
                program.display()
            ));
        }
        Ok(Spawned { child, first_line })
    }

    /// The pid (taskset execs the program, so it is the program's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text between `start` and the next `end` (or the end of the line).
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(rest[..rest.find(end).unwrap_or(rest.len())].trim())
}

pub fn parse_addr(text: &str) -> Option<SocketAddr> {
    text.parse().ok()
}

/// The `conclave` binary: `$CONCLAVE_BIN`, else this workspace's
/// `target/release/conclave`.
pub fn default_server() -> PathBuf {
    std::env::var_os("CONCLAVE_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/conclave"),
        PathBuf::from,
    )
}

/// A non-blocking loopback UDP socket with large kernel buffers.
pub fn udp_socket() -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    // Don't-fragment, as the server's media sockets send (it spares the
    // kernel an IP identification per datagram): the relay, as the limit,
    // must not pay for what the server does not.
    let probe: libc::c_int = libc::IP_PMTUDISC_PROBE;
    // SAFETY: a valid socket and an int-sized option value that outlives the call.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            &probe as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
