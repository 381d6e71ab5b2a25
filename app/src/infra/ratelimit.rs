//! Sign-in rate limits, per client IP and per account, with the `governor` crate (GCRA, keyed,
//! lock-free). Limits are per platform replica; a shared store is not needed to stop brute force.

use governor::{clock::{Clock, DefaultClock}, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::{num::NonZeroU32, time::Duration};

pub struct LoginLimiter {
    per_ip: DefaultKeyedRateLimiter<String>,
    per_account: DefaultKeyedRateLimiter<String>,
}

fn quota(per_minute: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute.max(1)).expect("max(1) is non-zero"))
}

impl LoginLimiter {
    pub fn new(per_ip_per_minute: u32, per_account_per_minute: u32) -> Self {
        LoginLimiter {
            per_ip: RateLimiter::keyed(quota(per_ip_per_minute)),
            per_account: RateLimiter::keyed(quota(per_account_per_minute)),
        }
    }

    /// Counts one attempt. `Err(wait)` when the IP or the account is over its limit.
    pub fn check(&self, ip: &str, account: &str) -> Result<(), Duration> {
        let clock = DefaultClock::default();
        let wait = |e: governor::NotUntil<_>| e.wait_time_from(clock.now());
        self.per_ip.check_key(&ip.to_string()).map_err(wait)?;
        self.per_account.check_key(&account.to_lowercase()).map_err(wait)?;
        Ok(())
    }

    /// Drops the state of keys that are full again; called from a background task.
    pub fn shrink(&self) {
        self.per_ip.retain_recent();
        self.per_account.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_attempt_on_one_account_is_refused_with_a_wait() {
        let limiter = LoginLimiter::new(100, 5);
        for _ in 0..5 {
            assert!(limiter.check("10.0.0.1", "ada@example.com").is_ok());
        }
        let wait = limiter.check("10.0.0.2", "ADA@example.com").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        // another account from the same IP is unaffected
        assert!(limiter.check("10.0.0.1", "bob@example.com").is_ok());
    }

    #[test]
    fn one_ip_is_limited_across_accounts() {
        let limiter = LoginLimiter::new(3, 100);
        for i in 0..3 {
            assert!(limiter.check("10.0.0.9", &format!("u{i}@example.com")).is_ok());
        }
        assert!(limiter.check("10.0.0.9", "u9@example.com").is_err());
    }
}
