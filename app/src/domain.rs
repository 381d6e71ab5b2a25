//! Input parsed once into domain types. After `parse`, the rest of the code cannot hold an
//! invalid value: constructors are private and every check lives here.

use crate::error::AppError;
use serde::{Deserialize, Serialize};

fn has_control_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

macro_rules! string_newtype {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name(String);
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(Email);
string_newtype!(DisplayName);
string_newtype!(ProjectName);
string_newtype!(EnvironmentName);
string_newtype!(TokenName);

impl Email {
    /// A deliberately simple check (one `@`, a dot in the domain, no spaces); the real proof
    /// of an address is the verification mail. Stored lower-cased.
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err(AppError::validation("email", "Enter your email address."));
        }
        if s.len() > 254 {
            return Err(AppError::validation("email", "That email address is too long."));
        }
        let valid = match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if !valid {
            return Err(AppError::validation("email", "That does not look like an email address."));
        }
        Ok(Email(s))
    }
}

/// A password as typed. Never stored, never logged: only its argon2id hash is kept.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(••••••)")
    }
}

impl Password {
    pub const MIN_LEN: usize = 10;
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let n = raw.chars().count();
        if n < Self::MIN_LEN {
            return Err(AppError::validation(
                "password",
                format!("Use at least {} characters.", Self::MIN_LEN),
            ));
        }
        if n > Self::MAX_LEN {
            return Err(AppError::validation(
                "password",
                format!("Use at most {} characters.", Self::MAX_LEN),
            ));
        }
        Ok(Password(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(AppError::validation("name", "Enter your name."));
        }
        if s.chars().count() > 80 {
            return Err(AppError::validation("name", "Names are at most 80 characters."));
        }
        if has_control_chars(s) {
            return Err(AppError::validation("name", "Names cannot contain control characters."));
        }
        Ok(DisplayName(s.to_string()))
    }
}

impl ProjectName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(AppError::validation("name", "Give the project a name."));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(AppError::validation(
                "name",
                format!("Project names are at most {} characters.", Self::MAX_LEN),
            ));
        }
        if has_control_chars(s) {
            return Err(AppError::validation("name", "Project names cannot contain control characters."));
        }
        Ok(ProjectName(s.to_string()))
    }
}

impl EnvironmentName {
    /// Lower-case letters, digits and hyphens, starting with a letter: environment names end
    /// up in host names and Kubernetes namespaces.
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err(AppError::validation("name", "Give the environment a name."));
        }
        if s.len() > 32 {
            return Err(AppError::validation("name", "Environment names are at most 32 characters."));
        }
        let ok = s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(AppError::validation(
                "name",
                "Use lower-case letters, digits and hyphens, starting with a letter.",
            ));
        }
        Ok(EnvironmentName(s))
    }
}

impl TokenName {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(AppError::validation("name", "Give the token a name, e.g. \"laptop CLI\"."));
        }
        if s.chars().count() > 64 {
            return Err(AppError::validation("name", "Token names are at most 64 characters."));
        }
        if has_control_chars(s) {
            return Err(AppError::validation("name", "Token names cannot contain control characters."));
        }
        Ok(TokenName(s.to_string()))
    }
}

/// Where to go after signing in: only a local path, never another site.
pub fn safe_next_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && !p.contains("://") => {
            p.to_string()
        }
        _ => "/dashboard".to_string(),
    }
}

/// A "contains" pattern for `ILIKE`: `%q%`, with `\`, `%` and `_` in `q` matched literally.
pub fn like_pattern(q: &str) -> String {
    format!("%{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

/// Percent-encodes a query-string value (everything but unreserved characters).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(url_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
    }

    #[test]
    fn malformed_emails_are_rejected_with_the_field_named() {
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com", "a@b@c.com", "ada@.com"] {
            let err = Email::parse(bad).unwrap_err();
            assert_eq!(err.field(), Some("email"), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn passwords_need_ten_to_128_characters() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("exactly10!").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert_eq!(format!("{:?}", Password::parse("secret-secret").unwrap()), "Password(••••••)");
    }

    #[test]
    fn project_names_are_trimmed_and_bounded() {
        assert_eq!(ProjectName::parse("  shop  ").unwrap().as_str(), "shop");
        assert_eq!(ProjectName::parse("   ").unwrap_err().field(), Some("name"));
        assert!(ProjectName::parse(&"a".repeat(64)).is_ok());
        assert!(ProjectName::parse(&"a".repeat(65)).is_err());
        assert!(ProjectName::parse("bad\u{7}name").is_err());
    }

    #[test]
    fn environment_names_are_dns_labels() {
        assert_eq!(EnvironmentName::parse("Staging").unwrap().as_str(), "staging");
        assert!(EnvironmentName::parse("pr-42").is_ok());
        for bad in ["", "1st", "with space", "trailing-", "ünïcode", &"a".repeat(33)] {
            assert!(EnvironmentName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn next_paths_never_leave_the_site() {
        assert_eq!(safe_next_path(Some("/projects/1")), "/projects/1");
        assert_eq!(safe_next_path(Some("//evil.example")), "/dashboard");
        assert_eq!(safe_next_path(Some("https://evil.example")), "/dashboard");
        assert_eq!(safe_next_path(Some("/\\evil.example")), "/dashboard");
        assert_eq!(safe_next_path(None), "/dashboard");
    }
}
