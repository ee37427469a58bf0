//! Response-rate limiting for the UDP front ends (native Handle and DNS), per source network.
//!
//! UDP sources are spoofable, so a node that answers every datagram is a reflector: a 70-byte
//! query for a large record draws kilobytes toward the victim. Each UDP worker keeps a token
//! bucket per source network (`/24` for IPv4, `/56` for IPv6 by default) counting answers and
//! answer bytes; an answer that finds its bucket empty is withheld: dropped, or every `slip`-th
//! one "slipped" — replaced by a short answer that tells a real client to ask over TCP (a DNS
//! TC answer; a native RC 2 error), which a spoofed victim cannot use to amplify anything.
//!
//! Sans-IO: the time is passed in. One limiter per worker thread, so no lock: each worker
//! refills at its share of the configured rates (`server::udp::RateLimit::shared_by`) with
//! the whole bucket depth, so a network spread over the workers draws about the configured
//! rate, and one worker can still pass a burst.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

pub use crate::config::RateLimitConfig as RateLimitSettings;

/// What to do with one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Drop,
    Slip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Network {
    V4(u32),
    V6(u128),
}

struct Bucket {
    answers: f64,
    bytes: f64,
    at: Instant,
    withheld: u32,
}

/// One worker's buckets.
pub struct RateLimiter {
    settings: RateLimitSettings,
    buckets: HashMap<Network, Bucket>,
}

impl RateLimiter {
    pub fn new(settings: RateLimitSettings) -> RateLimiter {
        RateLimiter {
            settings,
            buckets: HashMap::new(),
        }
    }

    fn network(&self, ip: IpAddr) -> Network {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let len = u32::from(self.settings.ipv4_prefix.min(32));
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                Network::V4(bits & mask)
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let len = u32::from(self.settings.ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                Network::V6(bits & mask)
            }
        }
    }

    fn capacity(&self) -> (f64, f64) {
        let burst = f64::from(self.settings.burst_secs.max(1));
        (
            f64::from(self.settings.responses_per_second) * burst,
            self.settings.bytes_per_second as f64 * burst,
        )
    }

    /// May an answer of `bytes` go to `ip` now? Spends from its network's bucket if so.
    pub fn check(&mut self, ip: IpAddr, bytes: usize, now: Instant) -> Verdict {
        if !self.settings.enabled || self.settings.exempt.contains(ip) {
            return Verdict::Send;
        }
        let network = self.network(ip);
        let (cap_answers, cap_bytes) = self.capacity();
        if self.buckets.len() >= self.settings.max_networks && !self.buckets.contains_key(&network)
        {
            self.forget_idle(now);
        }
        let rate_answers = f64::from(self.settings.responses_per_second);
        let rate_bytes = self.settings.bytes_per_second as f64;
        let bucket = self.buckets.entry(network).or_insert(Bucket {
            answers: cap_answers,
            bytes: cap_bytes,
            at: now,
            withheld: 0,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.answers = (bucket.answers + elapsed * rate_answers).min(cap_answers);
        bucket.bytes = (bucket.bytes + elapsed * rate_bytes).min(cap_bytes);
        bucket.at = now;
        let cost = bytes as f64;
        if bucket.answers >= 1.0 && bucket.bytes >= cost {
            bucket.answers -= 1.0;
            bucket.bytes -= cost;
            return Verdict::Send;
        }
        bucket.withheld = bucket.withheld.wrapping_add(1);
        let slip = self.settings.slip;
        if slip > 0 && bucket.withheld % slip == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// Forget the buckets that have refilled (they hold no history); if none have, forget
    /// them all rather than grow.
    fn forget_idle(&mut self, now: Instant) {
        let burst = f64::from(self.settings.burst_secs.max(1));
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.at).as_secs_f64() < burst);
        if self.buckets.len() >= self.settings.max_networks {
            self.buckets.clear();
        }
    }

    /// Networks tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings() -> RateLimitSettings {
        RateLimitSettings {
            responses_per_second: 10,
            bytes_per_second: 10_000,
            burst_secs: 1,
            slip: 2,
            ..RateLimitSettings::default()
        }
    }

    #[test]
    fn hole2_a_network_is_limited_in_answers_and_bytes_with_slip() {
        let mut l = RateLimiter::new(settings());
        let now = Instant::now();
        let victim = |last| IpAddr::from([192, 0, 2, last]);
        // Ten answers pass, whatever address of the /24 they go to.
        for i in 0..10 {
            assert_eq!(l.check(victim(i), 100, now), Verdict::Send);
        }
        // Then half are dropped and half slipped.
        let verdicts: Vec<Verdict> = (0..10).map(|i| l.check(victim(i), 100, now)).collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Slip).count(), 5);
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Drop).count(), 5);
        // Another network is not affected.
        assert_eq!(
            l.check(IpAddr::from([192, 0, 3, 1]), 100, now),
            Verdict::Send
        );
        // Refill over time.
        assert_eq!(
            l.check(victim(1), 100, now + Duration::from_millis(200)),
            Verdict::Send
        );
        // Bytes: one 9 000-byte answer passes, a second does not.
        let mut l = RateLimiter::new(settings());
        let other = IpAddr::from([198, 51, 100, 7]);
        assert_eq!(l.check(other, 9_000, now), Verdict::Send);
        assert_ne!(l.check(other, 9_000, now), Verdict::Send);
    }

    #[test]
    fn hole2_exempt_clients_and_disabled_limits_always_pass() {
        let mut l = RateLimiter::new(settings());
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(
                l.check(IpAddr::from([127, 0, 0, 1]), 10_000, now),
                Verdict::Send
            );
        }
        let mut off = RateLimiter::new(RateLimitSettings {
            enabled: false,
            ..settings()
        });
        for _ in 0..1000 {
            assert_eq!(
                off.check(IpAddr::from([10, 1, 1, 1]), 10_000, now),
                Verdict::Send
            );
        }
    }

    #[test]
    fn hole2_ipv6_networks_are_grouped_by_prefix_and_the_table_is_bounded() {
        let mut l = RateLimiter::new(RateLimitSettings {
            max_networks: 8,
            ..settings()
        });
        let now = Instant::now();
        let a: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let b: IpAddr = "2001:db8:0:1:ffff::2".parse().unwrap(); // same /56
        for _ in 0..5 {
            l.check(a, 1, now);
            l.check(b, 1, now);
        }
        assert_ne!(l.check(a, 1, now), Verdict::Send);
        for i in 0..100u32 {
            l.check(IpAddr::from((0x0a00_0000 + (i << 8)).to_be_bytes()), 1, now);
            assert!(l.tracked() <= 8);
        }
    }
}
