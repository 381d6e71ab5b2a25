//! Rate limits on what strangers can do to accounts, with the `governor` crate (GCRA, keyed,
//! lock-free): sign-in per client IP and per account; registration, password-reset requests and
//! submissions and verification mails per client IP and per target address. Limits are per
//! platform replica; a shared store is not needed to stop brute force or mail bombing.

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
        self.per_ip.check_key(&client_key(ip)).map_err(wait)?;
        self.per_account.check_key(&account.to_lowercase()).map_err(wait)?;
        Ok(())
    }

    /// Drops the state of keys that are full again; called from a background task.
    pub fn shrink(&self) {
        self.per_ip.retain_recent();
        self.per_account.retain_recent();
    }
}

/// Account actions that cost the platform a mail or a password hash, and may be aimed at
/// someone else's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAction {
    Register,
    /// "Forgot password": a mail to the address.
    ResetRequest,
    /// A new password through a mailed link: a hash, once the link checks out.
    ResetSubmit,
    ResendVerification,
}

impl AccountAction {
    const ALL: [AccountAction; 4] = [AccountAction::Register, AccountAction::ResetRequest, AccountAction::ResetSubmit, AccountAction::ResendVerification];

    fn index(self) -> usize {
        self as usize
    }
}

/// The key a client address is limited under: an IPv6 address by its /64 (one subscriber
/// usually has a whole /64 to rotate through), an IPv4 address as it is.
pub fn client_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_default(),
        _ => ip.to_string(),
    }
}

/// Mails (or attempts) per target address per hour, whatever the client's address.
pub const PER_TARGET_PER_HOUR: u32 = 3;

pub struct AccountLimiter {
    per_ip: Vec<DefaultKeyedRateLimiter<String>>,
    per_target: Vec<DefaultKeyedRateLimiter<String>>,
}

impl AccountLimiter {
    /// `per_ip_per_hour` of each action per client address; `PER_TARGET_PER_HOUR` per target.
    pub fn new(per_ip_per_hour: u32) -> Self {
        let hourly = |n: u32| Quota::per_hour(NonZeroU32::new(n.max(1)).expect("max(1) is non-zero"));
        AccountLimiter {
            per_ip: AccountAction::ALL.iter().map(|_| RateLimiter::keyed(hourly(per_ip_per_hour))).collect(),
            per_target: AccountAction::ALL.iter().map(|_| RateLimiter::keyed(hourly(PER_TARGET_PER_HOUR))).collect(),
        }
    }

    /// Counts one `action` from `ip` aimed at `target` (an email address, or a user id; empty
    /// when there is none). `Err(wait)` when either is over its limit.
    pub fn check(&self, action: AccountAction, ip: &str, target: &str) -> Result<(), Duration> {
        self.check_client(action, ip)?;
        self.check_target(action, target)
    }

    /// Counts one `action` from `ip` only.
    pub fn check_client(&self, action: AccountAction, ip: &str) -> Result<(), Duration> {
        let clock = DefaultClock::default();
        self.per_ip[action.index()].check_key(&client_key(ip)).map_err(|e| e.wait_time_from(clock.now()))
    }

    /// Counts one `action` aimed at `target` only (nothing when it is empty).
    pub fn check_target(&self, action: AccountAction, target: &str) -> Result<(), Duration> {
        let target = target.trim().to_lowercase();
        if target.is_empty() {
            return Ok(());
        }
        let clock = DefaultClock::default();
        self.per_target[action.index()].check_key(&target).map_err(|e| e.wait_time_from(clock.now()))
    }

    pub fn shrink(&self) {
        for l in self.per_ip.iter().chain(&self.per_target) {
            l.retain_recent();
        }
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

    #[test]
    fn an_ipv6_client_is_one_client_across_its_64() {
        assert_eq!(client_key("2001:db8:1:2:aaaa::1"), client_key("2001:db8:1:2:bbbb:cccc:dddd:eeee"));
        assert_ne!(client_key("2001:db8:1:2::1"), client_key("2001:db8:1:3::1"));
        assert_eq!(client_key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(client_key("203.0.113.7"), "203.0.113.7");
        let limiter = AccountLimiter::new(2);
        for i in 0..2 {
            assert!(limiter.check(AccountAction::Register, &format!("2001:db8::{i}"), "").is_ok());
        }
        assert!(limiter.check(AccountAction::Register, "2001:db8::99", "").is_err(), "a fresh address of the same /64 is the same client");
    }

    #[test]
    fn account_actions_are_limited_per_address_and_per_target_each_on_its_own() {
        let limiter = AccountLimiter::new(5);
        // Mail bombing one address from many clients: the fourth mail in the hour is refused.
        for i in 0..3 {
            assert!(limiter.check(AccountAction::ResetRequest, &format!("10.0.0.{i}"), "ada@example.com").is_ok());
        }
        let wait = limiter.check(AccountAction::ResetRequest, "10.0.0.9", "ADA@example.com ").unwrap_err();
        assert!(wait > Duration::from_secs(60) && wait <= Duration::from_secs(3600), "{wait:?}");
        // Another action on the same address has its own budget.
        assert!(limiter.check(AccountAction::ResendVerification, "10.0.0.9", "ada@example.com").is_ok());
        // One client across many addresses: the sixth is refused.
        for i in 0..5 {
            assert!(limiter.check(AccountAction::Register, "10.0.0.7", &format!("u{i}@example.com")).is_ok());
        }
        assert!(limiter.check(AccountAction::Register, "10.0.0.7", "u9@example.com").is_err());
        assert!(limiter.check(AccountAction::Register, "10.0.0.8", "u9@example.com").is_ok());
    }
}
