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
    let mut lines = Lines::new(max);
    let mut found = Vec::new();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let used = chunk.len();
        lines.feed(chunk, |line| found.push(line));
        reader.consume(used);
        for line in found.drain(..) {
            each(line).await;
        }
    }
    lines.finish(|line| found.push(line));
    for line in found {
        each(line).await;
    }
}

/// Cuts a stream of bytes into lines of at most `max` bytes, fed in chunks of any size: the
/// line splitting of `read_lines`, and of the instance monitor, which reads without tokio.
pub struct Lines {
    max: usize,
    line: Vec<u8>,
    /// Inside a line that was cut: its rest is dropped up to the newline.
    skipping: bool,
}

impl Lines {
    pub fn new(max: usize) -> Self {
        Lines { max, line: Vec::with_capacity(256), skipping: false }
    }

    /// Calls `each` with every line `chunk` completes (or cuts).
    pub fn feed(&mut self, mut chunk: &[u8], mut each: impl FnMut(String)) {
        while !chunk.is_empty() {
            let (part, newline) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (&chunk[..i], true),
                None => (chunk, false),
            };
            chunk = &chunk[part.len() + usize::from(newline)..];
            let mut cut = false;
            if !self.skipping {
                let room = self.max.saturating_sub(self.line.len());
                self.line.extend_from_slice(&part[..part.len().min(room)]);
                cut = part.len() > room;
            }
            if cut {
                self.skipping = !newline;
                each(text(&mut self.line, true));
            } else if newline {
                if self.skipping {
                    self.skipping = false;
                } else {
                    each(text(&mut self.line, false));
                }
            }
        }
    }

    /// The last line, if the stream ended without a newline.
    pub fn finish(&mut self, mut each: impl FnMut(String)) {
        if !self.line.is_empty() && !self.skipping {
            each(text(&mut self.line, false));
        }
        self.skipping = false;
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
