//! Output of a process, line by line, into its log sink. A line is at most `MAX_LINE` bytes:
//! a longer one is cut (marked ` …`) and the rest of it, up to its newline, is skipped — so a
//! process printing 64 MB without a newline costs the platform `MAX_LINE` bytes of memory, not
//! 64 MB.

use crate::logs::{LogSink, MAX_LINE};
use std::future::Future;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

pub async fn pump<R: AsyncRead + Unpin>(reader: R, sink: LogSink) {
    read_lines(reader, MAX_LINE, |line| {
        let sink = sink.clone();
        async move { sink.line(&line).await }
    })
    .await
}

/// Calls `each` with every line of `reader` (without its newline), cut at `max` bytes.
pub async fn read_lines<R, F, Fut>(reader: R, max: usize, mut each: F)
where
    R: AsyncRead + Unpin,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    // Inside a line that was cut: its rest is dropped up to the newline.
    let mut skipping = false;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (part, newline) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], true),
            None => (chunk, false),
        };
        let used = part.len() + usize::from(newline);
        let mut cut = false;
        if !skipping {
            let room = max.saturating_sub(line.len());
            line.extend_from_slice(&part[..part.len().min(room)]);
            cut = part.len() > room;
        }
        reader.consume(used);
        if cut {
            skipping = !newline;
            each(text(&mut line, true)).await;
        } else if newline {
            if skipping {
                skipping = false;
            } else {
                each(text(&mut line, false)).await;
            }
        }
    }
    if !line.is_empty() && !skipping {
        each(text(&mut line, false)).await;
    }
}

fn text(line: &mut Vec<u8>, cut: bool) -> String {
    // A multi-byte character split by the cut becomes U+FFFD rather than an error.
    let mut text = String::from_utf8_lossy(line).into_owned();
    if cut {
        text.push_str(" …");
    }
    line.clear();
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: Vec<u8>, max: usize) -> Vec<String> {
        let mut out = Vec::new();
        read_lines(&input[..], max, |l| {
            out.push(l);
            async {}
        })
        .await;
        out
    }

    #[tokio::test]
    async fn lines_are_split_and_long_ones_cut_and_their_rest_skipped() {
        let mut input = b"one\ntwo\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
        input.extend(b"\nthree\nlast without newline");
        assert_eq!(
            lines_of(input, 10).await,
            ["one", "two", "xxxxxxxxxx …", "three", "last witho …"]
        );
        assert_eq!(lines_of(b"exactly10!\n".to_vec(), 10).await, ["exactly10!"]);
        assert_eq!(lines_of(b"abc".to_vec(), 10).await, ["abc"]);
    }
}
