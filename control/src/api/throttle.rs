//! Per-address state with bounded memory: the login throttle (a token bucket per client
//! address) and the aggregation of unauthenticated access denials (one audit record per source
//! per interval, with a count, instead of one fsynced record per request).
//!
//! Addresses are keyed by [`SourceKey`]: an IPv4 address, or the /64 of an IPv6 address (one
//! host usually owns a whole /64, so per-address keys would be free to rotate). Both maps hold
//! at most a fixed number of keys; beyond that, new sources share one overflow entry, so a
//! flood from many addresses costs neither memory nor one audit record per address.
//!
//! The address is the TCP peer of the connection. Behind a reverse proxy (`plain_http`) that is
//! the proxy: forwarded headers are not trusted.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::audit::{Actor, AuditEntry};

/// Who a request came from, as the throttle and the denial audit count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKey {
    /// An IPv4 address.
    V4(u32),
    /// The /64 of an IPv6 address (IPv4-mapped addresses count as IPv4).
    V6Net(u64),
    /// No peer address known (in-process requests, tests).
    Unknown,
    /// The shared entry of sources beyond the map's capacity.
    Overflow,
}

impl SourceKey {
    /// The key of a peer address.
    pub fn of(addr: Option<IpAddr>) -> Self {
        match addr {
            None => SourceKey::Unknown,
            Some(IpAddr::V4(a)) => SourceKey::V4(u32::from(a)),
            Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(u32::from(v4)),
                None => SourceKey::V6Net((u128::from(a) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SourceKey::V4(a) => write!(f, "{}", std::net::Ipv4Addr::from(a)),
            SourceKey::V6Net(n) => {
                write!(f, "{}/64", std::net::Ipv6Addr::from(u128::from(n) << 64))
            }
            SourceKey::Unknown => f.write_str("unknown"),
            SourceKey::Overflow => f.write_str("other-addresses"),
        }
    }
}

/// Login attempts allowed per source: a burst, then one per refill period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Attempts a fresh source may make at once.
    pub burst: u32,
    /// One more attempt every this many ms.
    pub refill_ms: i64,
    /// Sources tracked at once (memory bound); beyond, new sources share one bucket.
    pub max_sources: usize,
}

impl Default for ThrottlePolicy {
    /// 10 attempts at once, then one every 6 s (10 a minute), 4096 sources.
    fn default() -> Self {
        ThrottlePolicy {
            burst: 10,
            refill_ms: 6_000,
            max_sources: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Fill level in ms of refill: one attempt costs `refill_ms`, every ms adds one (exact
    /// integer arithmetic, no drift).
    level: i64,
    updated_ms: i64,
    /// Refusals before this time are not audited again.
    audited_until_ms: i64,
    /// Refusals not audited since the last record.
    suppressed: u64,
}

/// A refused login attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// Seconds until the next attempt is allowed (`Retry-After`).
    pub retry_after_s: i64,
    /// `Some(n)`: write an audit record now, noting `n` earlier refusals that were not audited.
    /// `None`: this window's record was written already.
    pub audit: Option<u64>,
}

/// Token buckets per source, bounded in number.
#[derive(Debug)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    buckets: HashMap<SourceKey, Bucket>,
}

impl LoginThrottle {
    /// An empty throttle.
    pub fn new(policy: ThrottlePolicy) -> Self {
        LoginThrottle {
            policy: ThrottlePolicy {
                burst: policy.burst.max(1),
                refill_ms: policy.refill_ms.max(1),
                max_sources: policy.max_sources.max(1),
            },
            buckets: HashMap::new(),
        }
    }

    fn full(&self) -> i64 {
        i64::from(self.policy.burst).saturating_mul(self.policy.refill_ms)
    }

    /// Takes one attempt for `source` at `now_ms`; `Err` when its bucket is empty.
    pub fn attempt(&mut self, source: SourceKey, now_ms: i64) -> Result<(), Throttled> {
        let full = self.full();
        let refill_ms = self.policy.refill_ms;
        let key = self.admit_key(source, now_ms);
        let b = self.buckets.entry(key).or_insert(Bucket {
            level: full,
            updated_ms: now_ms,
            audited_until_ms: i64::MIN,
            suppressed: 0,
        });
        let elapsed = now_ms.saturating_sub(b.updated_ms).max(0);
        b.level = b.level.saturating_add(elapsed).min(full);
        b.updated_ms = b.updated_ms.max(now_ms);
        if b.level >= refill_ms {
            b.level -= refill_ms;
            return Ok(());
        }
        let wait_ms = refill_ms - b.level;
        let retry_after_s = (wait_ms + 999) / 1000;
        let audit = if now_ms >= b.audited_until_ms {
            // One record per window: the time a drained bucket needs to fill up again.
            b.audited_until_ms =
                now_ms.saturating_add(refill_ms.saturating_mul(i64::from(self.policy.burst)));
            Some(std::mem::take(&mut b.suppressed))
        } else {
            b.suppressed += 1;
            None
        };
        Err(Throttled {
            retry_after_s: retry_after_s.max(1),
            audit,
        })
    }

    /// The key to account `source` under: itself if tracked or if there is room (after
    /// forgetting sources whose bucket is full again, which is the same as never seen), else the
    /// shared overflow bucket.
    fn admit_key(&mut self, source: SourceKey, now_ms: i64) -> SourceKey {
        if self.buckets.contains_key(&source) {
            return source;
        }
        if self.buckets.len() >= self.policy.max_sources {
            let full = self.full();
            self.buckets.retain(|k, b| {
                let refilled = b.level.saturating_add(now_ms.saturating_sub(b.updated_ms)) >= full;
                *k == SourceKey::Overflow || !refilled || now_ms < b.audited_until_ms
            });
        }
        // The overflow bucket itself may always exist (one entry beyond the bound).
        if self.buckets.len() < self.policy.max_sources {
            source
        } else {
            SourceKey::Overflow
        }
    }

    /// Sources tracked (tests, metrics).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Unauthenticated denials of one source in the current interval.
#[derive(Clone, Debug)]
struct DenialGroup {
    count: u64,
    first_ms: i64,
    last_ms: i64,
    /// The first refused route and reason (a sample; the rest are counted).
    object: String,
    reason: String,
}

/// Aggregates unauthenticated `access.denied` records per source over an interval.
#[derive(Debug)]
pub struct DenialAggregator {
    max_sources: usize,
    groups: HashMap<SourceKey, DenialGroup>,
}

impl DenialAggregator {
    /// At most `max_sources` groups per interval (plus one overflow group).
    pub fn new(max_sources: usize) -> Self {
        DenialAggregator {
            max_sources: max_sources.max(1),
            groups: HashMap::new(),
        }
    }

    /// Counts one refused request.
    pub fn note(&mut self, source: SourceKey, object: &str, reason: &str, now_ms: i64) {
        let key = if self.groups.contains_key(&source) || self.groups.len() < self.max_sources {
            source
        } else {
            SourceKey::Overflow
        };
        let g = self.groups.entry(key).or_insert_with(|| DenialGroup {
            count: 0,
            first_ms: now_ms,
            last_ms: now_ms,
            object: object.to_owned(),
            reason: reason.to_owned(),
        });
        g.count += 1;
        g.first_ms = g.first_ms.min(now_ms);
        g.last_ms = g.last_ms.max(now_ms);
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The interval's records (one per source, in source order) and a fresh interval.
    pub fn take(&mut self) -> Vec<AuditEntry> {
        let mut groups: Vec<(SourceKey, DenialGroup)> = self.groups.drain().collect();
        groups.sort_by_key(|(k, _)| *k);
        groups
            .into_iter()
            .map(|(source, g)| AuditEntry {
                actor: Actor::system("unauthenticated"),
                action: "access.denied".into(),
                object: g.object,
                before: None,
                after: None,
                reason: g.reason,
                result: "refused".into(),
                detail: format!(
                    "source {source}: {} refused request{} between {} and {} (Unix ms); the first is named",
                    g.count,
                    if g.count == 1 { "" } else { "s" },
                    g.first_ms,
                    g.last_ms
                ),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> SourceKey {
        SourceKey::of(Some(s.parse().unwrap()))
    }

    #[test]
    fn ipv6_sources_are_their_slash_64_and_mapped_v4_is_v4() {
        assert_eq!(v4("2001:db8::1"), v4("2001:db8::ffff:1"));
        assert_ne!(v4("2001:db8::1"), v4("2001:db8:0:1::1"));
        assert_eq!(v4("::ffff:10.0.0.1"), v4("10.0.0.1"));
        assert_eq!(v4("2001:db8::1").to_string(), "2001:db8::/64");
        assert_eq!(v4("10.0.0.1").to_string(), "10.0.0.1");
    }

    #[test]
    fn a_bucket_allows_its_burst_then_one_per_refill_period() {
        let p = ThrottlePolicy {
            burst: 3,
            refill_ms: 1000,
            max_sources: 16,
        };
        let mut t = LoginThrottle::new(p);
        let a = v4("192.0.2.1");
        for _ in 0..3 {
            assert!(t.attempt(a, 0).is_ok());
        }
        let e = t.attempt(a, 0).unwrap_err();
        assert_eq!(e.retry_after_s, 1);
        assert_eq!(e.audit, Some(0), "the first refusal of a window is audited");
        // Further refusals in the window are counted, not audited.
        for i in 1..=4 {
            assert_eq!(t.attempt(a, i * 100).unwrap_err().audit, None);
        }
        // Another address is not affected.
        assert!(t.attempt(v4("192.0.2.2"), 500).is_ok());
        // After one refill period, exactly one more attempt.
        assert!(t.attempt(a, 1000).is_ok());
        assert!(t.attempt(a, 1400).is_err());
        // After the window (burst × refill = 3 s), the next refusal is audited again and
        // carries the number of unaudited ones.
        assert!(t.attempt(a, 3000).is_ok());
        assert!(t.attempt(a, 3000).is_ok());
        let e = t.attempt(a, 3000).unwrap_err();
        assert_eq!(e.audit, Some(5));
        // A long pause refills the whole burst, no more.
        for _ in 0..3 {
            assert!(t.attempt(a, 100_000).is_ok());
        }
        assert!(t.attempt(a, 100_000).is_err());
    }

    #[test]
    fn memory_is_bounded_and_new_sources_share_the_overflow_bucket() {
        let p = ThrottlePolicy {
            burst: 2,
            refill_ms: 1000,
            max_sources: 8,
        };
        let mut t = LoginThrottle::new(p);
        // Eight drained sources fill the map.
        for i in 0..8u32 {
            let s = SourceKey::V4(i);
            assert!(t.attempt(s, 0).is_ok());
            assert!(t.attempt(s, 0).is_ok());
        }
        // A flood from many new addresses: all accounted to one bucket, map stays bounded.
        let mut refused = 0;
        for i in 100..10_100u32 {
            if t.attempt(SourceKey::V4(i), 0).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 10_000 - 2, "the overflow bucket has one burst");
        assert!(t.tracked() <= 9, "{}", t.tracked());
        // Once the tracked sources have refilled, they are forgotten and room is made.
        assert!(t.attempt(SourceKey::V4(50_000), 10_000).is_ok());
        assert!(t.buckets.contains_key(&SourceKey::V4(50_000)));
    }

    #[test]
    fn denials_become_one_record_per_source_per_interval() {
        let mut d = DenialAggregator::new(2);
        for i in 0..1000 {
            d.note(
                v4("192.0.2.1"),
                "route/GET /api/v1/policy",
                "no credentials",
                i,
            );
        }
        d.note(v4("192.0.2.2"), "route/GET /metrics", "no credentials", 5);
        d.note(v4("192.0.2.3"), "route/GET /metrics", "no credentials", 6);
        d.note(v4("192.0.2.4"), "route/GET /metrics", "no credentials", 7);
        let recs = d.take();
        assert_eq!(recs.len(), 3, "two sources and the overflow group");
        assert!(
            recs[0]
                .detail
                .contains("192.0.2.1: 1000 refused requests between 0 and 999")
        );
        assert_eq!(recs[0].object, "route/GET /api/v1/policy");
        assert!(
            recs[2].detail.contains("other-addresses: 2 refused"),
            "{:?}",
            recs[2]
        );
        assert!(recs.iter().all(|r| r.action == "access.denied"));
        assert!(d.is_empty() && d.take().is_empty());
    }
}
