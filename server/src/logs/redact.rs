//! Masking of secret values in captured lines.

use std::collections::BTreeSet;

/// What replaces a secret value in logs.
pub const MASK: &str = "••••••";

/// Replaces every secret value in a line, longest first (so a secret that contains another is
/// masked whole).
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: &BTreeSet<String>) -> Self {
        let mut secrets: Vec<String> = secrets.iter().filter(|s| !s.is_empty()).cloned().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub fn redact(&self, line: &str) -> String {
        let mut out = line.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_longest_first() {
        let r = Redactor::new(&["hunter2".to_string(), "hunter2-extended".to_string()].into_iter().collect());
        assert_eq!(r.redact("a hunter2-extended b hunter2"), format!("a {MASK} b {MASK}"));
        assert_eq!(r.redact("nothing here"), "nothing here");
    }
}
