//! Sign-in throttling: growing delays per (account, address), per address and per account, in
//! bounded memory.
//!
//! * **Account and address together**: the first 3 failures are free, then each failure makes
//!   the pair wait 1 s, 2 s, 4 s, … up to 15 minutes before its next password check. This is what
//!   stops a guesser at one account from one place.
//! * **Address**: 10 free failures across all accounts, then the same doubling (password
//!   spraying from one address).
//! * **Account, from several addresses**: once failures came from at least 3 addresses, 10 free
//!   failures, then the doubling for every address (distributed guessing). An attack from a
//!   single address therefore never locks the owner out: they can sign in from elsewhere at once.
//!
//! While a key waits, attempts are refused *before* the password is checked (and cost no
//! Argon2 work). A success clears its pair and account. Entries are forgotten after an hour of
//! quiet; each table holds at most [`MAX_ENTRIES`] keys, evicting the stalest first.
//! IPv6 addresses count per /64, the block one subscriber usually holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Keys per table; beyond, the entries quiet for longest are evicted.
pub const MAX_ENTRIES: usize = 10_000;
const FORGET_AFTER: Duration = Duration::from_secs(3600);
const MAX_DELAY_SECS: u64 = 15 * 60;
const PAIR_FREE: u32 = 3;
const IP_FREE: u32 = 10;
const ACCOUNT_FREE: u32 = 10;
const ACCOUNT_MIN_SOURCES: usize = 3;
const MAX_SOURCES: usize = 16;

/// An address as throttling sees it (IPv6 reduced to its /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(u128);

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(u128::from(u32::from(v4))),
                None => Source((u128::from(v6) >> 64 << 64) | (1 << 32)),
            },
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    failures: u32,
    last: Instant,
    blocked_until: Instant,
    sources: Vec<Source>,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Entry {
            failures: 0,
            last: now,
            blocked_until: now,
            sources: Vec::new(),
        }
    }
}

fn delay(failures: u32, free: u32) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let exp = (failures - free).min(20);
    Duration::from_secs((1u64 << exp).min(MAX_DELAY_SECS))
}

struct Table<K> {
    map: HashMap<K, Entry>,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Table {
            map: HashMap::new(),
        }
    }

    fn blocked_until(&self, key: &K, now: Instant) -> Option<Instant> {
        let e = self.map.get(key)?;
        (now.duration_since(e.last) < FORGET_AFTER && e.blocked_until > now)
            .then_some(e.blocked_until)
    }

    fn entry(&mut self, key: &K, now: Instant) -> &mut Entry {
        if !self.map.contains_key(key) && self.map.len() >= MAX_ENTRIES {
            self.map
                .retain(|_, e| now.duration_since(e.last) < FORGET_AFTER || e.blocked_until > now);
            if self.map.len() >= MAX_ENTRIES
                && let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
            }
        }
        let e = self
            .map
            .entry(key.clone())
            .or_insert_with(|| Entry::new(now));
        if now.duration_since(e.last) >= FORGET_AFTER && e.blocked_until <= now {
            *e = Entry::new(now);
        }
        e
    }
}

/// The sign-in throttle (one per server process; see the module docs).
pub struct Throttle {
    pairs: Table<(String, Source)>,
    sources: Table<Source>,
    accounts: Table<String>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

impl Throttle {
    pub fn new() -> Self {
        Throttle {
            pairs: Table::new(),
            sources: Table::new(),
            accounts: Table::new(),
        }
    }

    /// Ok when a password may be checked now for `account` from `source`; otherwise how long
    /// to wait.
    pub fn check(&self, account: &str, source: Source, now: Instant) -> Result<(), Duration> {
        let pair = (account.to_string(), source);
        let mut until = [
            self.pairs.blocked_until(&pair, now),
            self.sources.blocked_until(&source, now),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(acc) = self.accounts.map.get(account)
            && acc.sources.len() >= ACCOUNT_MIN_SOURCES
            && let Some(u) = self.accounts.blocked_until(&account.to_string(), now)
        {
            until = until.max(Some(u));
        }
        match until {
            Some(u) => Err(u.duration_since(now).max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    /// Records a wrong password or code.
    pub fn failure(&mut self, account: &str, source: Source, now: Instant) {
        let pair = self.pairs.entry(&(account.to_string(), source), now);
        pair.failures = pair.failures.saturating_add(1);
        pair.last = now;
        pair.blocked_until = now + delay(pair.failures, PAIR_FREE);

        let src = self.sources.entry(&source, now);
        src.failures = src.failures.saturating_add(1);
        src.last = now;
        src.blocked_until = now + delay(src.failures, IP_FREE);

        let acc = self.accounts.entry(&account.to_string(), now);
        acc.failures = acc.failures.saturating_add(1);
        acc.last = now;
        acc.blocked_until = now + delay(acc.failures, ACCOUNT_FREE);
        if !acc.sources.contains(&source) && acc.sources.len() < MAX_SOURCES {
            acc.sources.push(source);
        }
    }

    /// Records a successful sign-in: the pair and the account start afresh (the address keeps
    /// its count, so that one good account does not launder spraying from that address).
    pub fn success(&mut self, account: &str, source: Source) {
        self.pairs.map.remove(&(account.to_string(), source));
        self.accounts.map.remove(account);
    }

    /// Keys held, all tables together (for tests and metrics).
    pub fn len(&self) -> usize {
        self.pairs.map.len() + self.sources.map.len() + self.accounts.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(n: u8) -> Source {
        Source::from(IpAddr::V4(Ipv4Addr::new(203, 0, 113, n)))
    }

    #[test]
    fn delays_grow_per_pair_and_do_not_lock_out_other_addresses() {
        let mut t = Throttle::new();
        let start = Instant::now();
        let mut now = start;
        // Three free failures, then 1 s, 2 s, 4 s…
        for _ in 0..3 {
            assert!(t.check("alice", ip(1), now).is_ok());
            t.failure("alice", ip(1), now);
        }
        assert_eq!(t.check("alice", ip(1), now), Err(Duration::from_secs(1)));
        now += Duration::from_secs(1);
        assert!(t.check("alice", ip(1), now).is_ok());
        t.failure("alice", ip(1), now);
        assert_eq!(t.check("alice", ip(1), now), Err(Duration::from_secs(2)));
        now += Duration::from_secs(2);
        t.failure("alice", ip(1), now);
        assert_eq!(t.check("alice", ip(1), now), Err(Duration::from_secs(4)));
        // The owner, elsewhere, is not held up; nor is another account from the same address.
        assert!(t.check("alice", ip(2), now).is_ok());
        assert!(t.check("bob", ip(1), now).is_ok());
        // The cap.
        for _ in 0..30 {
            t.failure("alice", ip(1), now);
        }
        assert_eq!(
            t.check("alice", ip(1), now),
            Err(Duration::from_secs(MAX_DELAY_SECS))
        );
        assert!(t.check("alice", ip(2), now).is_ok());
        // Success from another address clears the account, not the attacker's pair.
        t.success("alice", ip(2));
        assert!(t.check("alice", ip(1), now).is_err());
        // Forgotten after an hour of quiet once the delay is over.
        now += FORGET_AFTER + Duration::from_secs(MAX_DELAY_SECS);
        assert!(t.check("alice", ip(1), now).is_ok());
    }

    #[test]
    fn spraying_from_one_address_is_throttled() {
        let mut t = Throttle::new();
        let now = Instant::now();
        for i in 0..10 {
            let account = format!("user{i}");
            assert!(t.check(&account, ip(9), now).is_ok());
            t.failure(&account, ip(9), now);
        }
        assert!(t.check("someone-else", ip(9), now).is_err());
        assert!(t.check("someone-else", ip(8), now).is_ok());
    }

    #[test]
    fn distributed_guessing_throttles_the_account() {
        let mut t = Throttle::new();
        let now = Instant::now();
        for i in 0..10 {
            t.failure("alice", ip(i), now);
        }
        assert!(t.check("alice", ip(200), now).is_err());
        assert!(t.check("bob", ip(200), now).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Throttle::new();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES as u32 + 500) {
            let src = Source::from(IpAddr::V4(Ipv4Addr::from(i)));
            t.failure("alice", src, now + Duration::from_millis(u64::from(i)));
        }
        assert!(t.pairs.map.len() <= MAX_ENTRIES);
        assert!(t.sources.map.len() <= MAX_ENTRIES);
        assert!(t.len() <= 3 * MAX_ENTRIES);
    }

    #[test]
    fn ipv6_counts_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(Source::from(a), Source::from(b));
        assert_ne!(Source::from(a), Source::from(c));
        assert_eq!(Source::from(mapped), ip(7));
    }
}
