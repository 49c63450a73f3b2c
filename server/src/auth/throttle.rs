//! Sign-in throttling per client address (in memory, per instance). The per-account limit
//! lives in the database (`login_failures`) so it holds across restarts and instances.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Above this many tracked addresses the oldest entries are dropped, so a spray of
/// spoofed sources cannot grow memory without bound.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

pub struct IpThrottle {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl IpThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures as usize,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds to wait)` when the address is over its limit.
    pub fn check(&self, ip: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.get_mut(&ip)?;
        while entry
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            entry.pop_front();
        }
        if entry.len() >= self.max_failures {
            let oldest = entry.front().copied().unwrap_or(now);
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Some(wait.as_secs().max(1));
        }
        None
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED_ADDRESSES && !map.contains_key(&ip) {
            let window = self.window;
            map.retain(|_, v| v.back().is_some_and(|t| now.duration_since(*t) <= window));
            if map.len() >= MAX_TRACKED_ADDRESSES {
                map.clear();
            }
        }
        let entry = map.entry(ip).or_default();
        entry.push_back(now);
        if entry.len() > self.max_failures + 1 {
            entry.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_is_blocked_after_max_failures_and_others_are_not() {
        let t = IpThrottle::new(3, Duration::from_secs(3600));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            assert!(t.check(a).is_none());
            t.record_failure(a);
        }
        let wait = t.check(a).expect("blocked");
        assert!(wait > 3500 && wait <= 3600, "{wait}");
        assert!(t.check(b).is_none());
    }
}
