//! Lines as rows of `COPY … FROM STDIN` in its text format: columns separated by tabs, rows
//! ended by a newline, `\N` for NULL, and a backslash, tab, newline or carriage return inside a
//! value written as `\\`, `\t`, `\n`, `\r`. Everything else is taken literally (`\.` cannot
//! appear unescaped, since every backslash is doubled).

use super::Record;
use chrono::{Datelike, Timelike};

pub(super) const STATEMENT: &str = "COPY deployment_logs (deployment_id, at, stream, replica, line) FROM STDIN";

/// Appends one row for `r`.
pub(super) fn push_row(out: &mut Vec<u8>, r: &Record) {
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(r.deployment_id.hyphenated().encode_lower(&mut id).as_bytes());
    out.push(b'\t');
    push_timestamp(out, r);
    out.push(b'\t');
    out.extend_from_slice(r.stream.as_str().as_bytes());
    out.push(b'\t');
    match r.replica {
        Some(n) => push_int(out, n.into()),
        None => out.extend_from_slice(b"\\N"),
    }
    out.push(b'\t');
    push_escaped(out, &r.line);
    out.push(b'\n');
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00` (UTC, microseconds: what `timestamptz` keeps). A leap second
/// is written as the last microsecond of its minute; years are kept within 1–9999.
fn push_timestamp(out: &mut Vec<u8>, r: &Record) {
    let (date, time) = (r.at.date_naive(), r.at.time());
    push_padded(out, date.year().clamp(1, 9999) as u32, 4);
    out.push(b'-');
    push_padded(out, date.month(), 2);
    out.push(b'-');
    push_padded(out, date.day(), 2);
    out.push(b' ');
    push_padded(out, time.hour(), 2);
    out.push(b':');
    push_padded(out, time.minute(), 2);
    out.push(b':');
    push_padded(out, time.second(), 2);
    out.push(b'.');
    push_padded(out, (time.nanosecond() / 1000).min(999_999), 6);
    out.extend_from_slice(b"+00");
}

/// `n` in decimal, left-padded with zeros to `width` digits.
fn push_padded(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut rest = n;
    let mut len = 0;
    while rest > 0 || len == 0 {
        digits[digits.len() - 1 - len] = b'0' + (rest % 10) as u8;
        rest /= 10;
        len += 1;
    }
    for _ in len..width {
        out.push(b'0');
    }
    out.extend_from_slice(&digits[digits.len() - len..]);
}

fn push_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    let abs = n.unsigned_abs();
    if abs > u64::from(u32::MAX) {
        push_padded(out, (abs / 1_000_000_000) as u32, 1);
        push_padded(out, (abs % 1_000_000_000) as u32, 9);
    } else {
        push_padded(out, abs as u32, 1);
    }
}

/// Appends `s` escaped for the text format. NULs are dropped: Postgres text cannot hold them,
/// and one would fail the whole batch (the sink removes them already).
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0 => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        out.extend_from_slice(escape);
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::deployments::Stream;
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        push_escaped(&mut out, s);
        String::from_utf8(out).expect("escaping keeps UTF-8")
    }

    /// The text format's reading of one value, as Postgres does it (for the escapes we write).
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                assert!(!matches!(c, '\t' | '\n' | '\r'), "unescaped {c:?} would end the value or the row");
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                other => panic!("a lone backslash would start the escape {other:?}"),
            }
        }
        out
    }

    #[test]
    fn nasty_lines_are_escaped() {
        assert_eq!(escaped(r"C:\temp\new"), r"C:\\temp\\new");
        assert_eq!(escaped("a\tb\nc\rd"), r"a\tb\nc\rd");
        assert_eq!(escaped(r"\N"), r"\\N", "not NULL");
        assert_eq!(escaped(r"\."), r"\\.", "not the end of the data");
        assert_eq!(escaped("nul\0here\0"), "nulhere");
        assert_eq!(escaped("\\\\\t"), r"\\\\\t");
        assert_eq!(escaped(""), "");
        assert_eq!(escaped("ünïcødé ✓ \u{7f}\u{1b}[31m"), "ünïcødé ✓ \u{7f}\u{1b}[31m");
    }

    #[test]
    fn every_character_reads_back_as_written_except_nul() {
        let all: String = (0u32..0x300).filter_map(char::from_u32).chain(['\u{2028}', '\u{feff}', '😀']).collect();
        for line in [all.clone(), all.repeat(3), "\\\\n\\".into(), "\r\n\r\n".into()] {
            assert_eq!(unescape(&escaped(&line)), line.replace('\0', ""));
        }
    }

    #[test]
    fn a_row_has_five_columns_with_null_replica_and_utc_microseconds() {
        let id = Uuid::parse_str("0f4c3a52-9d51-4a84-8d2c-3b7e0d6c1a2b").expect("uuid");
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("time") + chrono::Duration::microseconds(7);
        let mut out = Vec::new();
        push_row(&mut out, &Record { deployment_id: id, at, stream: Stream::Stderr, replica: None, line: "a\tb".into() });
        push_row(&mut out, &Record { deployment_id: id, at, stream: Stream::Stdout, replica: Some(-12), line: String::new() });
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "0f4c3a52-9d51-4a84-8d2c-3b7e0d6c1a2b\t2026-01-02 03:04:05.000007+00\tstderr\t\\N\ta\\tb\n\
             0f4c3a52-9d51-4a84-8d2c-3b7e0d6c1a2b\t2026-01-02 03:04:05.000007+00\tstdout\t-12\t\n"
        );
    }

    #[test]
    fn numbers_are_written_in_full() {
        for (n, want) in [(0i64, "0"), (7, "7"), (-1, "-1"), (i64::from(i32::MAX), "2147483647"), (i64::from(i32::MIN), "-2147483648")] {
            let mut out = Vec::new();
            push_int(&mut out, n);
            assert_eq!(String::from_utf8(out).expect("utf-8"), want);
        }
        let mut out = Vec::new();
        push_padded(&mut out, 42, 6);
        assert_eq!(out, b"000042");
    }
}
