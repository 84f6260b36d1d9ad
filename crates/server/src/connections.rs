//! Open connections per client address, so that one stranger cannot hold a
//! server's worth of WebSockets (each one a place in some room).
//!
//! IPv6 addresses count per /64: one host usually has a whole /64 to pick
//! addresses from.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug)]
pub struct ConnectionLimit {
    /// 0: no limit.
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    limit: Arc<ConnectionLimit>,
    key: IpAddr,
}

/// The address that counts for `ip`: itself, or its /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::from(s)
            }
        },
        v4 => v4,
    }
}

impl ConnectionLimit {
    pub fn new(max: usize) -> Arc<ConnectionLimit> {
        Arc::new(ConnectionLimit {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for one more connection from `ip`, unless it has all it may.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Option<Permit> {
        let key = key(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Permit {
            limit: Arc::clone(self),
            key,
        })
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self
            .limit
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn each_address_gets_its_share_and_closing_frees_a_place() {
        let limit = ConnectionLimit::new(2);
        let a1 = limit.try_open(ip("192.0.2.1"));
        let a2 = limit.try_open(ip("192.0.2.1"));
        assert!(a1.is_some() && a2.is_some());
        assert!(limit.try_open(ip("192.0.2.1")).is_none());
        assert!(
            limit.try_open(ip("::ffff:192.0.2.1")).is_none(),
            "v4-mapped is the same address"
        );
        assert!(limit.try_open(ip("192.0.2.2")).is_some(), "another address");
        drop(a1);
        assert!(limit.try_open(ip("192.0.2.1")).is_some());
        drop(a2);
        assert_eq!(
            limit.addresses(),
            0,
            "nothing is kept for closed connections"
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_zero_means_no_limit() {
        let limit = ConnectionLimit::new(1);
        let _a = limit.try_open(ip("2001:db8:1:2::1"));
        assert!(
            limit.try_open(ip("2001:db8:1:2:ffff::9")).is_none(),
            "same /64"
        );
        assert!(
            limit.try_open(ip("2001:db8:1:3::1")).is_some(),
            "another /64"
        );
        let none = ConnectionLimit::new(0);
        let held: Vec<_> = (0..100)
            .filter_map(|_| none.try_open(ip("127.0.0.1")))
            .collect();
        assert_eq!(held.len(), 100);
    }
}
