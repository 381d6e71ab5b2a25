//! The instance monitor: one small process per sandboxed instance (`roundhouse monitor DIR`),
//! in the spirit of Podman's conmon, that holds the instance's output so that the instance
//! does not depend on the platform process that started it. The platform can be restarted,
//! upgraded or killed; the instance keeps running, its output keeps being kept, and the next
//! platform process takes it back (`Local::adopt`) and follows on where the last one stopped.
//!
//! The platform spawns it with the read ends of three pipes: descriptor 3 is the instance's
//! stdout, 4 its stderr, 5 bubblewrap's `--json-status-fd`. It cuts the output into lines (at
//! `MAX_LINE`, as the platform would) and appends them as frames to segment files in DIR:
//! `seg-<n>`, [`SEGMENT_BYTES`] each, at most [`SEGMENTS_KEPT`] of them — a platform away for
//! a long time loses the oldest output, never the machine's disk. When bubblewrap reports the
//! exit code, an exit frame follows; once every writer of the pipes is gone, an end frame, and
//! the monitor ends.
//!
//! The platform reads the frames with a [`Tail`] and saves its position (the cursor) only
//! after the lines it read are stored: a restart at any moment resumes at the first line not
//! stored, so the logs have no gap.

use super::pump::Lines;
use crate::logs::MAX_LINE;
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

pub const SEGMENT_BYTES: u64 = 8 << 20;
pub const SEGMENTS_KEPT: u64 = 8;
/// The descriptors the monitor reads: stdout, stderr, bubblewrap's status.
pub const FDS: [i32; 3] = [3, 4, 5];

const OUT: u8 = 1;
const ERR: u8 = 2;
const EXIT: u8 = 3;
const END: u8 = 4;
/// Kind (1 byte) and payload length (4 bytes, little-endian).
const HEADER: usize = 5;
/// The largest payload the monitor writes: a line cut at `MAX_LINE` (and marked), its time.
const MAX_FRAME: usize = MAX_LINE + 16;

/// What the monitor kept, in order. Lines carry the time the monitor read them (microseconds
/// since the epoch): lines kept while no platform followed keep their own time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdout(i64, String),
    Stderr(i64, String),
    /// The sandbox's main process ended with this code (a signal `n` is `128 + n`).
    Exit(Option<i32>),
    /// Nothing of the instance writes any more: nothing follows.
    End,
    /// Output the monitor dropped (its oldest segments) while nobody followed: this many bytes.
    Lost(u64),
}

fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A line's frame: its time, then its text.
fn line_frame(out: &mut Vec<u8>, kind: u8, at: i64, line: &str) {
    out.push(kind);
    out.extend_from_slice(&((line.len() + 8) as u32).to_le_bytes());
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(line.as_bytes());
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn segment(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n}"))
}

/// The segment files, written in order, each closed for good once the next exists.
struct Segments {
    dir: PathBuf,
    n: u64,
    file: File,
    size: u64,
}

impl Segments {
    fn open(dir: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(segment(dir, 0))?;
        Ok(Segments { dir: dir.to_path_buf(), n: 0, file, size: 0 })
    }

    /// Appends whole frames. When the disk refuses them (full), they are dropped and the
    /// segment cut back to its last whole frame: the monitor goes on draining the pipes (the
    /// instance is never killed by a full disk) and the frames never lose their alignment.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.file.write_all(bytes).is_err() {
            let _ = self.file.set_len(self.size);
            return Ok(());
        }
        self.size += bytes.len() as u64;
        if self.size >= SEGMENT_BYTES {
            self.n += 1;
            if self.n >= SEGMENTS_KEPT {
                self.wait_for_follower();
            }
            self.file = OpenOptions::new().create(true).append(true).mode(0o600).open(segment(&self.dir, self.n))?;
            self.size = 0;
            if self.n >= SEGMENTS_KEPT {
                let _ = fs::remove_file(segment(&self.dir, self.n - SEGMENTS_KEPT));
            }
        }
        Ok(())
    }

    /// Before a new segment would drop one not yet read: while a platform process follows,
    /// waits for it to catch up — so an instance that prints faster than its lines are stored
    /// is slowed down (its writes block once its pipe is full), as when the platform read its
    /// pipes itself. With no follower (the platform is away) the oldest segment is dropped
    /// instead: the instance never waits for a platform that is not there.
    fn wait_for_follower(&self) {
        let cursor = self.dir.join("cursor");
        loop {
            let read = fs::read(&cursor).ok().and_then(|b| b.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)).unwrap_or(0);
            if self.n < read + SEGMENTS_KEPT || !followed(&self.dir) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Whether another process holds the lock of the instance's folder `dir` (a platform process
/// follows the instance).
pub fn followed(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = File::open(dir.join("lock")) else { return false };
    // SAFETY: flock on an open descriptor; a lock taken here is released as `f` closes.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

/// `roundhouse monitor DIR`: keeps descriptors 3, 4 and 5 in DIR until they all close.
pub fn main(dir: &Path) -> std::process::ExitCode {
    // Not a tenant's to signal, and not the terminal's: a session of its own.
    // SAFETY: setsid has no preconditions.
    unsafe {
        libc::setsid();
    }
    match keep(dir) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roundhouse monitor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn keep(dir: &Path) -> io::Result<()> {
    use std::os::fd::FromRawFd;
    let segments = Arc::new(Mutex::new(Segments::open(dir)?));
    let write = |segments: &Mutex<Segments>, bytes: &[u8]| -> io::Result<()> { segments.lock().unwrap_or_else(|e| e.into_inner()).write(bytes) };
    let mut readers = Vec::new();
    for (fd, kind) in [(FDS[0], OUT), (FDS[1], ERR)] {
        // SAFETY: the platform passes these descriptors open, for this process alone.
        let mut pipe = unsafe { File::from_raw_fd(fd) };
        let segments = segments.clone();
        readers.push(std::thread::spawn(move || -> io::Result<()> {
            let mut lines = Lines::new(MAX_LINE);
            let mut buf = vec![0u8; 64 * 1024];
            let mut frames = Vec::with_capacity(80 * 1024);
            loop {
                let n = match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let at = now_micros();
                lines.feed(&buf[..n], |line| line_frame(&mut frames, kind, at, &line));
                // One write per read: the lines of a burst reach the file together.
                write(&segments, &frames)?;
                frames.clear();
            }
            lines.finish(|line| line_frame(&mut frames, kind, now_micros(), &line));
            write(&segments, &frames)
        }));
    }
    // bubblewrap's status: JSON documents, the last of them `{ "exit-code": N }`.
    // SAFETY: as above.
    let mut status = unsafe { File::from_raw_fd(FDS[2]) };
    let mut text = String::new();
    let _ = status.read_to_string(&mut text);
    let code = exit_code(&text);
    // Also on its own, for the platform to see at once however far behind the logs are.
    let _ = write_exit(dir, code);
    if code.is_some() {
        let mut f = Vec::new();
        frame(&mut f, EXIT, &code.unwrap_or_default().to_le_bytes());
        write(&segments, &f)?;
    }
    for reader in readers {
        reader.join().map_err(|_| io::Error::other("a reader thread panicked"))??;
    }
    let mut f = Vec::new();
    if code.is_none() {
        frame(&mut f, EXIT, &[]);
    }
    frame(&mut f, END, &[]);
    write(&segments, &f)
}

/// `DIR/exit`: the exit code (empty: ended, code unknown), written once it is known.
fn write_exit(dir: &Path, code: Option<i32>) -> io::Result<()> {
    let tmp = dir.join("exit.tmp");
    fs::write(&tmp, code.map(|c| c.to_string()).unwrap_or_default())?;
    fs::rename(tmp, dir.join("exit"))
}

/// What `DIR/exit` says: `None` while the instance runs, `Some(code)` once it ended.
pub fn read_exit(dir: &Path) -> Option<Option<i32>> {
    let text = fs::read_to_string(dir.join("exit")).ok()?;
    Some(text.trim().parse().ok())
}

/// The exit code in bubblewrap's status documents.
fn exit_code(status: &str) -> Option<i32> {
    status.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find_map(|v| v.get("exit-code")?.as_i64()).map(|c| c as i32)
}

/// Where a reader of the monitor's frames is: the segment and the offset in it of the next
/// frame. Saved in DIR/cursor once what comes before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Follows the frames of one monitor from the saved cursor on.
pub struct Tail {
    dir: PathBuf,
    at: Position,
    file: Option<File>,
    cursor: File,
    buf: Vec<u8>,
}

impl Tail {
    /// A tail of the frames in `dir`, from `from` (where the stored lines end, as the
    /// database says), else from the cursor saved in the folder.
    pub fn open(dir: &Path, from: Option<Position>) -> io::Result<Tail> {
        let cursor = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(dir.join("cursor"))?;
        let mut saved = [0u8; 16];
        let at = match (from, cursor.read_exact_at(&mut saved, 0)) {
            (Some(at), _) => at,
            (None, Ok(())) => Position {
                segment: u64::from_le_bytes(saved[..8].try_into().unwrap_or_default()),
                offset: u64::from_le_bytes(saved[8..].try_into().unwrap_or_default()),
            },
            (None, Err(_)) => Position::default(),
        };
        Ok(Tail { dir: dir.to_path_buf(), at, file: None, cursor, buf: Vec::new() })
    }

    /// Where the next frame is.
    pub fn position(&self) -> Position {
        self.at
    }

    /// The frames written since the last call, about `max` bytes of them at most, each with
    /// the position just after it; none when nothing new was written yet.
    pub fn read(&mut self, max: usize) -> io::Result<Vec<(Frame, Position)>> {
        let mut frames = Vec::new();
        loop {
            if self.file.is_none() {
                match File::open(segment(&self.dir, self.at.segment)) {
                    Ok(f) => self.file = Some(f),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // The monitor dropped it (it was away too long), or has not made it.
                        match self.oldest_after(self.at.segment) {
                            Some(next) => {
                                let lost = (next - self.at.segment) * SEGMENT_BYTES - self.at.offset.min(SEGMENT_BYTES);
                                self.at = Position { segment: next, offset: 0 };
                                frames.push((Frame::Lost(lost), self.at));
                                continue;
                            }
                            None => return Ok(frames),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            let file = self.file.as_ref().expect("opened above");
            // Whether the next segment existed before this read (then nothing more comes here),
            // or this one was dropped while being read.
            let sealed = segment(&self.dir, self.at.segment + 1).exists() || !segment(&self.dir, self.at.segment).exists();
            self.buf.resize(max.max(64 * 1024), 0);
            let mut n = file.read_at(&mut self.buf, self.at.offset)?;
            if n == self.buf.len() && n >= HEADER {
                // A frame larger than the buffer: read all of it.
                let len = HEADER + u32::from_le_bytes(self.buf[1..HEADER].try_into().unwrap_or_default()) as usize;
                if len > n {
                    self.buf.resize(len, 0);
                    n += file.read_at(&mut self.buf[n..], self.at.offset + n as u64)?;
                }
            }
            let mut used = 0;
            while let Some((f, len)) = parse(&self.buf[used..n]) {
                used += len;
                frames.push((f, Position { segment: self.at.segment, offset: self.at.offset + used as u64 }));
            }
            self.at.offset += used as u64;
            if used > 0 || !sealed {
                return Ok(frames);
            }
            // Read to its end (a frame cut short there by a crash is skipped) and sealed: on
            // to the next segment.
            self.file = None;
            self.at = Position { segment: self.at.segment + 1, offset: 0 };
        }
    }

    /// Saves the position: everything before it is stored. Segments wholly before it go.
    pub fn commit(&mut self) -> io::Result<()> {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.at.segment.to_le_bytes());
        bytes[8..].copy_from_slice(&self.at.offset.to_le_bytes());
        self.cursor.write_all_at(&bytes, 0)?;
        for n in (0..self.at.segment).rev() {
            if fs::remove_file(segment(&self.dir, n)).is_err() {
                break;
            }
        }
        Ok(())
    }

    fn oldest_after(&self, n: u64) -> Option<u64> {
        fs::read_dir(&self.dir)
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("seg-")?.parse::<u64>().ok())
            .filter(|&s| s > n)
            .min()
    }
}

/// The first whole frame of `bytes`, and its length.
fn parse(bytes: &[u8]) -> Option<(Frame, usize)> {
    if bytes.len() < HEADER {
        return None;
    }
    let len = u32::from_le_bytes(bytes[1..HEADER].try_into().ok()?) as usize;
    if len > MAX_FRAME {
        // Not something the monitor writes: the rest of this segment is unreadable.
        return Some((Frame::Lost(0), bytes.len()));
    }
    let payload = bytes.get(HEADER..HEADER + len)?;
    let line = || {
        let at = payload.get(..8).and_then(|b| b.try_into().ok()).map_or(0, i64::from_le_bytes);
        (at, String::from_utf8_lossy(payload.get(8..).unwrap_or_default()).into_owned())
    };
    let f = match bytes[0] {
        OUT => {
            let (at, text) = line();
            Frame::Stdout(at, text)
        }
        ERR => {
            let (at, text) = line();
            Frame::Stderr(at, text)
        }
        EXIT => Frame::Exit(payload.try_into().ok().map(i32::from_le_bytes)),
        END => Frame::End,
        // Not a frame this version writes: skipped.
        _ => return Some((Frame::Lost(0), HEADER + len)),
    };
    Some((f, HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(read: Vec<(Frame, Position)>) -> Vec<Frame> {
        read.into_iter().map(|(f, _)| f).collect()
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("rh-monitor-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn written(dir: &Path, lines: &[(u8, &str)]) {
        let mut s = Segments::open(dir).unwrap();
        for (i, (kind, line)) in lines.iter().enumerate() {
            let mut f = Vec::new();
            line_frame(&mut f, *kind, i as i64, line);
            s.write(&f).unwrap();
        }
    }

    #[test]
    fn frames_are_read_back_in_order_and_a_reopened_tail_starts_at_the_saved_cursor() {
        let d = dir();
        written(&d, &[(OUT, "one"), (ERR, "two"), (OUT, "three")]);
        let mut tail = Tail::open(&d, None).unwrap();
        assert_eq!(frames(tail.read(1 << 20).unwrap()), [Frame::Stdout(0, "one".into()), Frame::Stderr(1, "two".into()), Frame::Stdout(2, "three".into())]);
        assert_eq!(frames(tail.read(1 << 20).unwrap()), [], "nothing new");
        tail.commit().unwrap();
        // More comes while nobody follows; a new reader starts after what was committed.
        let mut s = Segments { dir: d.clone(), n: 0, file: OpenOptions::new().append(true).open(segment(&d, 0)).unwrap(), size: 0 };
        let mut f = Vec::new();
        line_frame(&mut f, OUT, 9, "four");
        frame(&mut f, EXIT, &7i32.to_le_bytes());
        frame(&mut f, END, &[]);
        // Half a frame is not read until the rest is there.
        s.write(&f[..3]).unwrap();
        let mut again = Tail::open(&d, None).unwrap();
        assert_eq!(frames(again.read(1 << 20).unwrap()), []);
        s.write(&f[3..]).unwrap();
        let read = again.read(1 << 20).unwrap();
        assert_eq!(frames(read.clone()), [Frame::Stdout(9, "four".into()), Frame::Exit(Some(7)), Frame::End]);
        // A tail opened at the position after "four" (as the database would say) reads on from there.
        let mut from = Tail::open(&d, Some(read[0].1)).unwrap();
        assert_eq!(frames(from.read(1 << 20).unwrap()), [Frame::Exit(Some(7)), Frame::End]);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn segments_roll_over_and_the_tail_follows_them_and_counts_what_was_dropped() {
        let d = dir();
        let line = "x".repeat(MAX_LINE);
        let mut s = Segments::open(&d).unwrap();
        let mut f = Vec::new();
        line_frame(&mut f, OUT, 0, &line);
        // Segments 0 to SEGMENTS_KEPT + 1 filled, the next one begun: only the newest
        // SEGMENTS_KEPT are kept, so the first three are gone.
        let per_segment = SEGMENT_BYTES.div_ceil(f.len() as u64);
        for _ in 0..per_segment * (SEGMENTS_KEPT + 2) {
            s.write(&f).unwrap();
        }
        assert!(!segment(&d, 2).exists() && segment(&d, 3).exists() && segment(&d, SEGMENTS_KEPT + 2).exists());
        let mut tail = Tail::open(&d, None).unwrap();
        let first = frames(tail.read(1 << 20).unwrap());
        assert_eq!(first[0], Frame::Lost(3 * SEGMENT_BYTES));
        let mut lines = first.len() - 1;
        loop {
            let more = frames(tail.read(4 << 20).unwrap());
            if more.is_empty() {
                break;
            }
            lines += more.len();
        }
        assert_eq!(lines as u64, per_segment * (SEGMENTS_KEPT - 1), "every frame of the kept segments, once");
        tail.commit().unwrap();
        let left: Vec<_> = fs::read_dir(&d).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("seg-")).collect();
        assert_eq!(left.len(), 1, "segments before the cursor are removed");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn while_a_platform_follows_the_monitor_waits_for_it_instead_of_dropping_output() {
        use std::os::fd::AsRawFd;
        let d = dir();
        let lock = File::create(d.join("lock")).unwrap();
        // SAFETY: flock on an open descriptor.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let line = "y".repeat(MAX_LINE);
        let mut f = Vec::new();
        line_frame(&mut f, OUT, 0, &line);
        let per_segment = SEGMENT_BYTES.div_ceil(f.len() as u64);
        let total = per_segment * (SEGMENTS_KEPT + 2);
        let writer = {
            let d = d.clone();
            std::thread::spawn(move || {
                let mut s = Segments::open(&d).unwrap();
                for _ in 0..total {
                    s.write(&f).unwrap();
                }
            })
        };
        while !segment(&d, SEGMENTS_KEPT - 1).exists() {
            std::thread::yield_now();
        }
        let mut tail = Tail::open(&d, None).unwrap();
        let mut seen = Vec::new();
        loop {
            let done = writer.is_finished();
            let more = frames(tail.read(4 << 20).unwrap());
            if more.is_empty() && done {
                break;
            }
            seen.extend(more);
            tail.commit().unwrap();
        }
        writer.join().unwrap();
        assert!(!seen.iter().any(|f| matches!(f, Frame::Lost(_))), "output was dropped while followed");
        assert_eq!(seen.len() as u64, total);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_corrupt_length_is_not_believed() {
        let mut bytes = vec![OUT];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(b"whatever follows");
        assert_eq!(parse(&bytes), Some((Frame::Lost(0), bytes.len())), "skipped, never allocated");
    }

    #[test]
    fn the_exit_code_is_bubblewraps_last_status_document() {
        assert_eq!(exit_code("{ \"child-pid\": 12 }\n{ \"exit-code\": 137 }\n"), Some(137));
        assert_eq!(exit_code("{ \"child-pid\": 12 }\n"), None);
    }
}
