//! Requests per token: a token bucket per token id on this node (`--api-rate`
//! requests a second, bursts of as many). Over it: 429 with `Retry-After`. Per node: a
//! fleet of N nodes lets a token make up to N times the rate in all (documented).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The default rate, per token and node: a console polling a few views each second
/// stays far below it; a script looping without pause does not.
pub const DEFAULT_RATE: u32 = 20;

pub struct Limiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    pub fn new(per_second: u32) -> Limiter {
        let rate = per_second.max(1) as f64;
        Limiter { rate, burst: rate, buckets: Mutex::new(HashMap::new()) }
    }

    /// Take one request for `token`: Ok, or how long until one is allowed.
    pub fn take(&self, token: &str, now: Instant) -> Result<(), Duration> {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() > 100_000 {
            // Tokens are few; ids are only known ones (checked before this), so this
            // only bounds the map against an unforeseen growth.
            b.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(60));
        }
        let (level, at) = b.entry(token.to_string()).or_insert((self.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - *level) / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let l = Limiter::new(5);
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(l.take("a", t0), Ok(()), "burst {i}");
        }
        let wait = l.take("a", t0).unwrap_err();
        assert!(wait > Duration::from_millis(150) && wait <= Duration::from_millis(200), "{wait:?}");
        assert_eq!(l.take("b", t0), Ok(()), "another token has its own bucket");
        assert_eq!(l.take("a", t0 + Duration::from_millis(200)), Ok(()), "refilled at the rate");
        assert!(l.take("a", t0 + Duration::from_millis(200)).is_err());
    }
}
