//! The media port's sockets: one per media thread, all bound to the same
//! port, read and written many datagrams per system call.
//!
//! With several threads the sockets form an `SO_REUSEPORT` group: the
//! kernel hands each datagram to one socket by a hash of its addresses, so
//! everything one remote address sends arrives, in order, at the same
//! thread. `recvmmsg` and `sendmmsg` move up to [`BATCH`] datagrams per call
//! instead of one.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams moved per system call.
pub const BATCH: usize = 32;
/// Largest datagram read; a longer one is dropped (media datagrams stay
/// under the path MTU, ~1200 bytes).
pub const MAX_DATAGRAM: usize = 2048;
/// Kernel socket buffer sizes asked for. The default (~200 KiB) overflows in
/// bursts when every participant's keyframe arrives at once; Linux caps the
/// request at net.core.rmem_max / wmem_max.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds `count` sockets to `addr` (port 0: one port the kernel picks, the
/// same for all). One socket binds exclusively, as any server would; a
/// group uses `SO_REUSEPORT`, which only processes of the same user can join.
pub fn bind_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let first = bind_one(addr, count > 1)?;
    let port = first.local_addr()?.port();
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(bind_one(SocketAddr::new(addr.ip(), port), true)?);
    }
    Ok(sockets)
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::warn!("cannot enlarge the UDP receive buffer: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::warn!("cannot enlarge the UDP send buffer: {e}");
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv4() {
        if let Err(e) = set_dont_fragment(&socket) {
            tracing::warn!("cannot set don't-fragment on the UDP socket: {e}");
        }
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    tracing::debug!(
        receive = socket.recv_buffer_size().unwrap_or(0),
        send = socket.send_buffer_size().unwrap_or(0),
        "media socket buffers"
    );
    Ok(socket.into())
}

/// Sends IPv4 datagrams with don't-fragment set, ignoring learnt path MTUs
/// (`IP_PMTUDISC_PROBE`). Media datagrams stay under ~1200 bytes (str0m's
/// MTU), so nothing is lost; and a DF datagram needs no IP identification,
/// which the kernel otherwise derives per datagram with a keyed hash (3% of
/// the forwarding path's time at fan-out 50, docs/performance.md).
fn set_dont_fragment(socket: &socket2::Socket) -> io::Result<()> {
    let value: libc::c_int = libc::IP_PMTUDISC_PROBE;
    // SAFETY: a valid socket and an int-sized option value that outlives the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            &value as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Buffers for one `recvmmsg` call and what it read.
pub struct RecvBatch {
    buffers: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    /// Per datagram read: its length and sender (`None`: truncated or of
    /// an address family we do not serve, to be skipped).
    received: [(usize, Option<SocketAddr>); BATCH],
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            buffers: Box::new([[0; MAX_DATAGRAM]; BATCH]),
            // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
            addrs: Box::new(unsafe { zeroed() }),
            received: [(0, None); BATCH],
            count: 0,
        }
    }
}

impl RecvBatch {
    /// Reads up to [`BATCH`] datagrams without blocking; returns how many
    /// (`WouldBlock` when none is waiting).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.count = 0;
        // SAFETY: zeroed iovec and mmsghdr are valid (null pointers, zero
        // lengths) and every one used is filled in below.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..BATCH {
            iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let header = &mut headers[i].msg_hdr;
            header.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &mut iovecs[i];
            header.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live buffer of the stated length
        // and at a sockaddr_storage, all outliving the call; the kernel
        // writes at most BATCH entries.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).min(BATCH);
        for (i, header) in headers.iter().enumerate().take(n) {
            let truncated = header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let source = socket_addr(&self.addrs[i]).filter(|_| !truncated);
            self.received[i] = ((header.msg_len as usize).min(MAX_DATAGRAM), source);
        }
        self.count = n;
        Ok(n)
    }

    /// The `i`th datagram of the last read, unless it is to be skipped.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        if i >= self.count {
            return None;
        }
        let (len, source) = self.received[i];
        Some((source?, &self.buffers[i][..len]))
    }
}

/// What a [`send_batch`] did not send.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendLoss {
    /// The send buffer was full: UDP is lossy anyway, and a media thread
    /// must not stall every room for one burst.
    pub full: usize,
    /// The kernel refused the datagram (e.g. an unreachable destination).
    pub refused: usize,
}

/// Sends every datagram without blocking, [`BATCH`] per system call.
pub fn send_batch(fd: RawFd, datagrams: &[(SocketAddr, Vec<u8>)]) -> SendLoss {
    let mut loss = SendLoss::default();
    let mut start = 0;
    while start < datagrams.len() {
        let chunk = &datagrams[start..datagrams.len().min(start + BATCH)];
        let addrs: Vec<socket2::SockAddr> = chunk.iter().map(|(a, _)| (*a).into()).collect();
        // SAFETY: as in `RecvBatch::recv`; zeroed entries are filled below.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, (_, contents)) in chunk.iter().enumerate() {
            // sendmmsg only reads the buffer; iovec's pointer is mutable by type.
            iovecs[i] = libc::iovec {
                iov_base: contents.as_ptr() as *mut libc::c_void,
                iov_len: contents.len(),
            };
            let header = &mut headers[i].msg_hdr;
            header.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
            header.msg_namelen = addrs[i].len();
            header.msg_iov = &mut iovecs[i];
            header.msg_iovlen = 1;
        }
        // SAFETY: the first `chunk.len()` headers point at live buffers and
        // addresses that outlive the call; the kernel only reads them.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                headers.as_mut_ptr(),
                chunk.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent > 0 {
            start += sent as usize;
            continue;
        }
        // The datagram at `start` failed (sendmmsg reports an error only
        // when the first one of a call does).
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            loss.full += datagrams.len() - start;
            break;
        }
        tracing::trace!(destination = %datagrams[start].0, "udp send failed: {error}");
        loss.refused += 1;
        start += 1;
    }
    loss
}

fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in, which fits in a
            // sockaddr_storage and has no stricter alignment.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn receive_all(socket: &std::net::UdpSocket, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < want && std::time::Instant::now() < deadline {
            match batch.recv(socket.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        if let Some((a, d)) = batch.get(i) {
                            got.push((a, d.to_vec()));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
        got
    }

    #[test]
    fn a_batch_goes_out_and_comes_in_whole_and_in_order() {
        let receiver = bind_group("127.0.0.1:0".parse().expect("addr"), 1)
            .expect("bind")
            .remove(0);
        let sender = bind_group("127.0.0.1:0".parse().expect("addr"), 1)
            .expect("bind")
            .remove(0);
        let to = receiver.local_addr().expect("addr");
        // More than two system calls' worth, of varied sizes.
        let datagrams: Vec<(SocketAddr, Vec<u8>)> = (0..BATCH * 2 + 5)
            .map(|i| (to, vec![i as u8; 1 + i * 13]))
            .collect();
        assert_eq!(
            send_batch(sender.as_raw_fd(), &datagrams),
            SendLoss::default()
        );
        let got = receive_all(&receiver, datagrams.len());
        let from = sender.local_addr().expect("addr");
        assert_eq!(got.len(), datagrams.len());
        for ((source, data), (_, sent)) in got.iter().zip(&datagrams) {
            assert_eq!(*source, from);
            assert_eq!(data, sent);
        }
    }

    #[test]
    fn an_oversized_datagram_is_skipped_and_the_rest_kept() {
        let receiver = bind_group("127.0.0.1:0".parse().expect("addr"), 1)
            .expect("bind")
            .remove(0);
        let to = receiver.local_addr().expect("addr");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        sender.send_to(&[1; MAX_DATAGRAM + 1], to).expect("send");
        sender.send_to(&[2; 100], to).expect("send");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut batch = RecvBatch::default();
        let n = batch.recv(receiver.as_raw_fd()).expect("read");
        assert_eq!(n, 2);
        assert!(batch.get(0).is_none(), "the truncated one is skipped");
        assert_eq!(batch.get(1).map(|(_, d)| d.to_vec()), Some(vec![2; 100]));
        assert!(batch.get(2).is_none());
    }

    #[test]
    fn ipv4_media_sockets_send_with_dont_fragment() {
        let addr = "127.0.0.1:0".parse().expect("address");
        let sockets = bind_group(addr, 2).expect("bind");
        for socket in &sockets {
            let mut value: libc::c_int = -1;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: an int-sized buffer and its length, both outliving the call.
            let result = unsafe {
                libc::getsockopt(
                    socket.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_MTU_DISCOVER,
                    &mut value as *mut libc::c_int as *mut libc::c_void,
                    &mut len,
                )
            };
            assert_eq!(result, 0);
            assert_eq!(value, libc::IP_PMTUDISC_PROBE);
        }
    }

    #[test]
    fn a_group_shares_one_port_and_a_taken_port_is_refused() {
        let group = bind_group("127.0.0.1:0".parse().expect("addr"), 3).expect("bind");
        let port = group[0].local_addr().expect("addr").port();
        assert!(group
            .iter()
            .all(|s| s.local_addr().expect("addr").port() == port));
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        assert!(bind_group(addr, 1).is_err());
        assert!(bind_group(addr, 2).is_err());
    }

    #[test]
    fn one_remote_address_always_reaches_the_same_socket_of_a_group() {
        let group = bind_group("127.0.0.1:0".parse().expect("addr"), 2).expect("bind");
        let to = group[0].local_addr().expect("addr");
        for _ in 0..4 {
            let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            for i in 0..20u8 {
                sender.send_to(&[i], to).expect("send");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            let counts: Vec<usize> = group
                .iter()
                .map(|s| {
                    let mut batch = RecvBatch::default();
                    let mut n = 0;
                    while let Ok(k) = batch.recv(s.as_raw_fd()) {
                        n += k;
                    }
                    n
                })
                .collect();
            assert!(counts == [20, 0] || counts == [0, 20], "{counts:?}");
        }
    }
}
