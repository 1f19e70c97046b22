//! Strict mode's private address pool: one address from 198.18.0.0/15 (RFC
//! 2544's benchmarking range, never routed on the internet) per name the
//! resolver answers, for one invocation.
//!
//! First come, first served: the first name gets 198.18.0.1, the next
//! 198.18.0.2, and so on up to 198.19.255.254 (the /15's first and last
//! addresses are skipped), [`CAPACITY`] names in all. A name keeps its
//! address for the whole invocation, so the transparent listener can map the
//! address a connection was made to back to the name it was asked for
//! ([`Pool::name_of`]). Once every address is given, new names are refused
//! ([`Exhausted`]); names already given keep theirs.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::policy::authority::{Authority, Host};

/// The pool's network, 198.18.0.0/15.
pub(super) const NETWORK: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// The network's prefix length.
pub(super) const PREFIX: u32 = 15;
/// Names the pool can give an address: every address of the /15 but its
/// first and last.
pub(super) const CAPACITY: usize = (1 << (32 - PREFIX)) - 2;

/// The pool is full: a new name gets no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    /// How many names hold an address.
    pub given: usize,
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the private address pool (198.18.0.0/15) is exhausted: {} names already hold an address in this invocation",
            self.given
        )
    }
}

impl std::error::Error for Exhausted {}

/// Names to addresses and back, shared by the resolver and the transparent
/// listener.
#[derive(Debug)]
pub struct Pool {
    inner: Mutex<Inner>,
    /// At most this many names ([`CAPACITY`], or fewer in tests).
    limit: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Name to its index in `names`.
    by_name: HashMap<Arc<str>, usize>,
    /// Index `i` holds the name given `198.18.0.1 + i`.
    names: Vec<Arc<str>>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::new()
    }
}

impl Pool {
    /// An empty pool of [`CAPACITY`] addresses.
    pub fn new() -> Pool {
        Pool::with_limit(CAPACITY)
    }

    /// An empty pool that gives at most `limit` names an address (at most
    /// [`CAPACITY`]).
    pub fn with_limit(limit: usize) -> Pool {
        Pool {
            inner: Mutex::new(Inner::default()),
            limit: limit.min(CAPACITY),
        }
    }

    /// The address of `name` (normalised by the caller), given now if it has
    /// none yet.
    pub fn assign(&self, name: &str) -> Result<Ipv4Addr, Exhausted> {
        let mut inner = self.lock();
        if let Some(&index) = inner.by_name.get(name) {
            return Ok(address(index));
        }
        let index = inner.names.len();
        if index >= self.limit {
            return Err(Exhausted { given: index });
        }
        let name: Arc<str> = Arc::from(name);
        inner.names.push(Arc::clone(&name));
        inner.by_name.insert(name, index);
        Ok(address(index))
    }

    /// The address `name` was given, if it was.
    pub fn address_of(&self, name: &str) -> Option<Ipv4Addr> {
        self.lock().by_name.get(name).map(|&index| address(index))
    }

    /// The name `ip` was given to, if it was.
    pub fn name_of(&self, ip: Ipv4Addr) -> Option<Arc<str>> {
        let index = index_of(ip)?;
        self.lock().names.get(index).cloned()
    }

    /// `target` with its host named, where it is an address this pool gave
    /// (IPv4, or IPv4-mapped as it reaches a dual-stack socket); else as
    /// it is. What strict mode judges a connection to a pool address by.
    pub fn named(&self, target: Authority) -> Authority {
        let ip = match target.host {
            Host::Ip(IpAddr::V4(v4)) => v4,
            Host::Ip(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => return target,
            },
            Host::Name(_) => return target,
        };
        match self.name_of(ip) {
            Some(name) => Authority {
                host: Host::Name(name.to_string()),
                port: target.port,
            },
            None => target,
        }
    }

    /// How many names hold an address.
    pub fn len(&self) -> usize {
        self.lock().names.len()
    }

    /// Whether no name holds an address yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `ip` is in the pool's network at all (given or not): a
    /// connection to one that was never given is a guess, not a name.
    pub fn contains(ip: Ipv4Addr) -> bool {
        u32::from(ip) >> (32 - PREFIX) == u32::from(NETWORK) >> (32 - PREFIX)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; if something did, the maps
        // are still whole (each insert is one step), so keep using them.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The address at `index` (0 is 198.18.0.1).
fn address(index: usize) -> Ipv4Addr {
    // index < CAPACITY < 2^17, so neither the conversion nor the sum can
    // overflow.
    let offset = u32::try_from(index).unwrap_or(u32::MAX).min(CAPACITY as u32 - 1);
    Ipv4Addr::from(u32::from(NETWORK) + 1 + offset)
}

/// The index of a pool address, if `ip` is one the pool can give.
fn index_of(ip: Ipv4Addr) -> Option<usize> {
    let offset = u32::from(ip).checked_sub(u32::from(NETWORK) + 1)?;
    let index = usize::try_from(offset).ok()?;
    (index < CAPACITY).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn first_come_first_served_from_198_18_0_1() {
        let pool = Pool::new();
        assert_eq!(pool.assign("a.example"), Ok(ip("198.18.0.1")));
        assert_eq!(pool.assign("b.example"), Ok(ip("198.18.0.2")));
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn a_name_keeps_its_address() {
        let pool = Pool::new();
        let first = pool.assign("registry.npmjs.org");
        assert_eq!(pool.assign("other.example"), Ok(ip("198.18.0.2")));
        assert_eq!(pool.assign("registry.npmjs.org"), first);
        assert_eq!(pool.address_of("registry.npmjs.org"), Some(ip("198.18.0.1")));
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn reverse_lookup_names_only_given_addresses() {
        let pool = Pool::new();
        let _ = pool.assign("a.example");
        assert_eq!(pool.name_of(ip("198.18.0.1")).as_deref(), Some("a.example"));
        assert_eq!(pool.name_of(ip("198.18.0.2")), None);
        assert_eq!(pool.name_of(ip("198.18.0.0")), None);
        assert_eq!(pool.name_of(ip("198.19.255.255")), None);
        assert_eq!(pool.name_of(ip("10.0.0.1")), None);
        assert_eq!(pool.address_of("b.example"), None);
    }

    #[test]
    fn addresses_span_the_whole_slash_15_but_its_ends() {
        assert_eq!(CAPACITY, 131_070);
        assert_eq!(address(0), ip("198.18.0.1"));
        assert_eq!(address(254), ip("198.18.0.255"));
        assert_eq!(address(255), ip("198.18.1.0"));
        assert_eq!(address(CAPACITY - 1), ip("198.19.255.254"));
        for index in [0, 1, 255, 65_534, 65_535, CAPACITY - 1] {
            assert_eq!(index_of(address(index)), Some(index), "{index}");
        }
        assert_eq!(index_of(ip("198.18.0.0")), None);
        assert_eq!(index_of(ip("198.19.255.255")), None);
        assert_eq!(index_of(ip("198.20.0.1")), None);
        assert_eq!(index_of(ip("0.0.0.0")), None);
    }

    #[test]
    fn contains_is_the_slash_15() {
        assert!(Pool::contains(ip("198.18.0.0")));
        assert!(Pool::contains(ip("198.19.255.255")));
        assert!(!Pool::contains(ip("198.17.255.255")));
        assert!(!Pool::contains(ip("198.20.0.0")));
    }

    #[test]
    fn when_exhausted_new_names_are_refused_and_old_ones_keep_theirs() {
        let pool = Pool::with_limit(2);
        assert!(pool.assign("a.example").is_ok());
        assert!(pool.assign("b.example").is_ok());
        let refused = pool.assign("c.example");
        assert_eq!(refused, Err(Exhausted { given: 2 }));
        let why = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(why.contains("exhausted"), "{why}");
        assert_eq!(pool.assign("a.example"), Ok(ip("198.18.0.1")));
        assert_eq!(pool.address_of("c.example"), None);
    }

    #[test]
    fn the_full_pool_holds_131070_names() {
        let pool = Pool::new();
        for i in 0..CAPACITY {
            if let Err(e) = pool.assign(&format!("h{i}.example")) {
                panic!("{i}: {e}");
            }
        }
        assert_eq!(
            pool.name_of(ip("198.19.255.254")).as_deref(),
            Some("h131069.example")
        );
        assert_eq!(
            pool.assign("one.more.example"),
            Err(Exhausted { given: CAPACITY })
        );
    }

    #[test]
    fn a_limit_above_capacity_is_capacity() {
        assert_eq!(Pool::with_limit(usize::MAX).limit, CAPACITY);
    }

    #[test]
    fn shared_across_threads_each_name_gets_one_address() {
        let pool = Arc::new(Pool::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    (0..100)
                        .map(|i| pool.assign(&format!("h{i}.example")).ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let seen: Vec<Vec<Option<Ipv4Addr>>> = threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| panic!("a thread panicked")))
            .collect();
        assert!(seen.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(pool.len(), 100);
    }
}
