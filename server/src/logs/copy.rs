//! Lines as rows of `COPY … FROM STDIN (FORMAT binary)`: Postgres takes each value as it
//! stores it (16 bytes of uuid, microseconds since 2000 for the time, a 4-byte integer, the
//! line's bytes) instead of parsing text, which is a third of what a row costs it.
//!
//! The format: a signature, flags and header-extension length; per row, the number of columns
//! (16-bit) and per column its length (32-bit, -1 for NULL) and bytes; then -1 (16-bit). All
//! integers big-endian. A line holds no NUL (Postgres text cannot), and its length is exact,
//! so nothing in a line can end its value or row early.

use super::Record;

pub(super) const STATEMENT: &str = "COPY deployment_logs (deployment_id, at, stream, replica, line) FROM STDIN (FORMAT binary)";

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
const COLUMNS: i16 = 5;
/// 2000-01-01T00:00:00Z, Postgres's epoch, in Unix microseconds.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Starts the data of one `COPY`.
pub(super) fn start(out: &mut Vec<u8>) {
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
    out.extend_from_slice(&0i32.to_be_bytes()); // no header extension
}

/// Ends the data of one `COPY`.
pub(super) fn finish(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

/// Appends one row for `r`.
pub(super) fn push_row(out: &mut Vec<u8>, r: &Record) {
    out.extend_from_slice(&COLUMNS.to_be_bytes());
    push_value(out, r.deployment_id.as_bytes());
    push_value(out, &(r.at.timestamp_micros() - POSTGRES_EPOCH_MICROS).to_be_bytes());
    push_value(out, r.stream.as_str().as_bytes());
    match r.replica {
        Some(n) => push_value(out, &n.to_be_bytes()),
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    let line = r.line.as_bytes();
    if line.contains(&0) {
        // The sink removes NULs already; one left would fail the whole batch.
        push_value(out, &line.iter().copied().filter(|&b| b != 0).collect::<Vec<u8>>());
    } else {
        push_value(out, line);
    }
}

fn push_value(out: &mut Vec<u8>, value: &[u8]) {
    // A line is at most MAX_LINE (+ a marker) long: far below i32::MAX.
    let len = i32::try_from(value.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&value[..len as usize]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::deployments::Stream;
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    /// Reads the data back as Postgres does: (columns per row, each value or None for NULL).
    fn read(data: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
        let (head, mut rest) = data.split_at(19);
        assert_eq!(&head[..11], SIGNATURE);
        assert_eq!(&head[11..], &[0; 8], "no flags, no header extension");
        let mut rows = Vec::new();
        loop {
            let columns = i16::from_be_bytes([rest[0], rest[1]]);
            rest = &rest[2..];
            if columns == -1 {
                assert!(rest.is_empty(), "nothing after the trailer");
                return rows;
            }
            let mut row = Vec::new();
            for _ in 0..columns {
                let len = i32::from_be_bytes(rest[..4].try_into().unwrap());
                rest = &rest[4..];
                if len < 0 {
                    row.push(None);
                } else {
                    row.push(Some(rest[..len as usize].to_vec()));
                    rest = &rest[len as usize..];
                }
            }
            rows.push(row);
        }
    }

    #[test]
    fn rows_have_five_columns_with_null_replica_and_microseconds_since_2000() {
        let id = Uuid::parse_str("0f4c3a52-9d51-4a84-8d2c-3b7e0d6c1a2b").expect("uuid");
        let at = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 1).single().expect("time") + chrono::Duration::microseconds(7);
        let before = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).single().expect("time");
        let mut out = Vec::new();
        start(&mut out);
        push_row(&mut out, &Record { deployment_id: id, at, stream: Stream::Stderr, replica: None, line: "a\tb\n\\.".into(), cursor: None });
        push_row(&mut out, &Record { deployment_id: id, at: before, stream: Stream::Stdout, replica: Some(-12), line: String::new(), cursor: None });
        finish(&mut out);

        let rows = read(&out);
        assert_eq!(rows.len(), 2);
        let value = |v: &[u8]| Some(v.to_vec());
        assert_eq!(rows[0], vec![value(id.as_bytes()), value(&1_000_007i64.to_be_bytes()), value(b"stderr"), None, value(b"a\tb\n\\.")]);
        assert_eq!(rows[1], vec![value(id.as_bytes()), value(&(-1_000_000i64).to_be_bytes()), value(b"stdout"), value(&(-12i32).to_be_bytes()), value(b"")]);
    }

    #[test]
    fn a_nul_left_in_a_line_is_dropped_and_the_length_stays_exact() {
        let mut out = Vec::new();
        start(&mut out);
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("time");
        for line in ["nul\0here\0", "ünïcødé ✓ 😀", "\0"] {
            push_row(&mut out, &Record { deployment_id: Uuid::nil(), at, stream: Stream::Stdout, replica: Some(0), line: line.into(), cursor: None });
        }
        finish(&mut out);
        let lines: Vec<Vec<u8>> = read(&out).into_iter().map(|row| row[4].clone().expect("a line")).collect();
        assert_eq!(lines, vec![b"nulhere".to_vec(), "ünïcødé ✓ 😀".as_bytes().to_vec(), Vec::new()]);
    }
}
