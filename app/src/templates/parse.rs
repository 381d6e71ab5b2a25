//! Reading a template file: TOML into a [`Spec`], then validation.

use super::{validate::{validate, Problem}, Spec};

/// A template that could not be read: the file is not valid TOML for the format (with the line
/// and column), or it is but breaks its rules (every problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("{0}")]
    Syntax(String),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<Problem>),
}

/// The most a template file may be.
pub const MAX_FILE_BYTES: usize = 256 * 1024;

/// Parses and validates one template file; `samples` are the bundled sample apps.
pub fn read(text: &str, samples: &[&str]) -> Result<Spec, Invalid> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Invalid::Syntax(format!("a template file is at most {} KB", MAX_FILE_BYTES / 1024)));
    }
    let spec: Spec = toml::from_str(text).map_err(|e| Invalid::Syntax(e.to_string().trim_end().to_string()))?;
    let problems = validate(&spec, samples);
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(Invalid::Rules(problems))
    }
}
