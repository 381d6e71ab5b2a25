//! The `${{ … }}` language of variable values.
//!
//! A value is literal text with embedded expressions:
//! - references: `${{Postgres.DATABASE_URL}}` (another service's variable),
//!   `${{shared.API_KEY}}` (a shared variable of the environment), `${{PORT}}` (same service);
//! - generators: `${{secret(32)}}`, `${{secret(32, "abc")}}`, `${{randomInt(1, 100)}}`, which run
//!   once when the variable is saved (see [`expand_generators`]); the stored value holds the result.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reference {
    /// `${{NAME}}`: a variable of the same service.
    Own(String),
    /// `${{shared.NAME}}`.
    Shared(String),
    /// `${{Service.NAME}}`.
    Service { service: String, name: String },
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Own(n) => write!(f, "{n}"),
            Reference::Shared(n) => write!(f, "shared.{n}"),
            Reference::Service { service, name } => write!(f, "{service}.{name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generator {
    Secret { length: usize, alphabet: Option<String> },
    RandomInt { min: i64, max: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Ref(Reference),
    Gen(Generator),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("\"${{{{\" at position {0} is never closed with \"}}}}\".")]
    Unclosed(usize),
    #[error("\"${{{{}}}}\" is empty: write a reference such as ${{{{shared.API_KEY}}}}.")]
    Empty,
    #[error("\"{0}\" is not a valid reference: use NAME, shared.NAME or Service.NAME.")]
    BadReference(String),
    #[error("{0}")]
    BadGenerator(String),
}

pub const MAX_SECRET_LENGTH: usize = 256;

fn is_var_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Service names: letters, digits, `-` and `_`, starting with a letter.
pub fn is_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub fn is_variable_name(s: &str) -> bool {
    is_var_name(s)
}

fn parse_args(inner: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in inner.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => args.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() || !args.is_empty() {
        args.push(cur.trim().to_string());
    }
    args
}

fn parse_generator(expr: &str) -> Result<Option<Generator>, TemplateError> {
    let Some((name, rest)) = expr.split_once('(') else { return Ok(None) };
    let Some(inner) = rest.strip_suffix(')') else {
        return Err(TemplateError::BadGenerator(format!("\"{expr}\" is missing its closing parenthesis.")));
    };
    let args = parse_args(inner);
    match name.trim() {
        "secret" => {
            let length = match args.first().map(|a| a.parse::<usize>()) {
                None => 32,
                Some(Ok(n)) if (1..=MAX_SECRET_LENGTH).contains(&n) => n,
                Some(_) => {
                    return Err(TemplateError::BadGenerator(format!(
                        "secret(length) takes a length from 1 to {MAX_SECRET_LENGTH}."
                    )))
                }
            };
            let alphabet = match args.get(1) {
                None => None,
                Some(a) if a.chars().count() >= 2 => Some(a.clone()),
                Some(_) => return Err(TemplateError::BadGenerator("The alphabet of secret() needs at least 2 characters.".into())),
            };
            if args.len() > 2 {
                return Err(TemplateError::BadGenerator("secret() takes a length and an optional alphabet.".into()));
            }
            Ok(Some(Generator::Secret { length, alphabet }))
        }
        "randomInt" => {
            let nums: Vec<Result<i64, _>> = args.iter().map(|a| a.parse::<i64>()).collect();
            match nums.as_slice() {
                [Ok(min), Ok(max)] if min <= max => Ok(Some(Generator::RandomInt { min: *min, max: *max })),
                _ => Err(TemplateError::BadGenerator("randomInt(min, max) takes two whole numbers, min ≤ max.".into())),
            }
        }
        other => Err(TemplateError::BadGenerator(format!(
            "Unknown function {other}(): use secret(length[, alphabet]) or randomInt(min, max)."
        ))),
    }
}

fn parse_reference(expr: &str) -> Result<Reference, TemplateError> {
    match expr.split_once('.') {
        None if is_var_name(expr) => Ok(Reference::Own(expr.to_string())),
        Some(("shared", name)) if is_var_name(name) => Ok(Reference::Shared(name.to_string())),
        Some((service, name)) if is_service_name(service) && is_var_name(name) => {
            Ok(Reference::Service { service: service.to_string(), name: name.to_string() })
        }
        _ => Err(TemplateError::BadReference(expr.to_string())),
    }
}

/// Splits a value into text, references and generators.
pub fn parse(value: &str) -> Result<Vec<Part>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = value;
    let mut offset = 0;
    while let Some(start) = rest.find("${{") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 3..];
        let end = after.find("}}").ok_or(TemplateError::Unclosed(offset + start))?;
        let expr = after[..end].trim();
        if expr.is_empty() {
            return Err(TemplateError::Empty);
        }
        match parse_generator(expr)? {
            Some(g) => parts.push(Part::Gen(g)),
            None => parts.push(Part::Ref(parse_reference(expr)?)),
        }
        let consumed = start + 3 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

/// The references a value makes, in order.
pub fn references(value: &str) -> Result<Vec<Reference>, TemplateError> {
    Ok(parse(value)?.into_iter().filter_map(|p| if let Part::Ref(r) = p { Some(r) } else { None }).collect())
}

const DEFAULT_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Runs the generators of a value, keeping references as they are. `pick(n)` returns a uniformly
/// random number in `0..n` (injected so tests are deterministic and the server uses the OS RNG).
pub fn expand_generators(value: &str, mut pick: impl FnMut(u64) -> u64) -> Result<String, TemplateError> {
    let mut out = String::new();
    for part in parse(value)? {
        match part {
            Part::Text(t) => out.push_str(&t),
            Part::Ref(r) => {
                out.push_str("${{");
                out.push_str(&r.to_string());
                out.push_str("}}");
            }
            Part::Gen(Generator::Secret { length, alphabet }) => {
                let chars: Vec<char> = alphabet.as_deref().unwrap_or(DEFAULT_ALPHABET).chars().collect();
                for _ in 0..length {
                    out.push(chars[pick(chars.len() as u64) as usize]);
                }
            }
            Part::Gen(Generator::RandomInt { min, max }) => {
                let span = (max as i128 - min as i128 + 1) as u128;
                let n = if span > u64::MAX as u128 { pick(u64::MAX) as i128 } else { pick(span as u64) as i128 };
                out.push_str(&((min as i128 + n) as i64).to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_all_three_kinds_are_parsed_between_text() {
        let parts = parse("postgres://${{ PGUSER }}@${{Postgres.PGHOST}}:${{shared.PORT}}/db").unwrap();
        assert_eq!(
            parts,
            vec![
                Part::Text("postgres://".into()),
                Part::Ref(Reference::Own("PGUSER".into())),
                Part::Text("@".into()),
                Part::Ref(Reference::Service { service: "Postgres".into(), name: "PGHOST".into() }),
                Part::Text(":".into()),
                Part::Ref(Reference::Shared("PORT".into())),
                Part::Text("/db".into()),
            ]
        );
    }

    #[test]
    fn plain_text_and_lone_dollars_stay_text() {
        assert_eq!(parse("a $b ${c} {{d}}").unwrap(), vec![Part::Text("a $b ${c} {{d}}".into())]);
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn malformed_expressions_are_rejected_with_a_reason() {
        assert_eq!(parse("x ${{oops").unwrap_err(), TemplateError::Unclosed(2));
        assert_eq!(parse("${{ }}").unwrap_err(), TemplateError::Empty);
        assert!(matches!(parse("${{a.b.c}}").unwrap_err(), TemplateError::BadReference(_)));
        assert!(matches!(parse("${{1abc}}").unwrap_err(), TemplateError::BadReference(_)));
        assert!(matches!(parse("${{secret(0)}}").unwrap_err(), TemplateError::BadGenerator(_)));
        assert!(matches!(parse("${{secret(999)}}").unwrap_err(), TemplateError::BadGenerator(_)));
        assert!(matches!(parse("${{randomInt(5, 1)}}").unwrap_err(), TemplateError::BadGenerator(_)));
        assert!(matches!(parse("${{uuid()}}").unwrap_err(), TemplateError::BadGenerator(_)));
    }

    #[test]
    fn generators_run_once_and_keep_references() {
        let mut n = 0;
        let v = expand_generators("k=${{secret(4, \"ab\")}};p=${{PORT}};r=${{randomInt(10, 12)}}", |m| {
            n += 1;
            n % m
        })
        .unwrap();
        // picks: 1%2, 2%2, 3%2, 4%2 for "baba", then 5%3 = 2 for 10 + 2.
        assert_eq!(v, "k=baba;p=${{PORT}};r=12");
    }

    #[test]
    fn secrets_use_the_default_alphabet_and_length() {
        let v = expand_generators("${{secret()}}", |m| m - 1).unwrap();
        assert_eq!(v, "9".repeat(32));
        let v = expand_generators("${{secret(40)}}", |_| 0).unwrap();
        assert_eq!(v, "A".repeat(40));
    }
}
