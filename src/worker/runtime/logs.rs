//! Container logs in the CRI format (`<RFC3339Nano> stdout|stderr F|P <text>`): the writing side
//! used by the shim (line splitting, 16 KiB partial lines, size-capped rotation to `<log>.1`)
//! and the reading side used by `herd logs` (tail, follow).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest line written as one record; longer lines are cut into `P` records, like containerd.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Which container stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Splits a byte stream into lines; anything longer than [`MAX_LINE`] is emitted as partial.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Appends `data`, returning complete records as `(partial, text-without-newline)`.
    pub fn feed(&mut self, data: &[u8]) -> Vec<(bool, Vec<u8>)> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                if nl <= MAX_LINE {
                    let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
                    line.pop();
                    out.push((false, line));
                    continue;
                }
            }
            if self.buf.len() > MAX_LINE {
                out.push((true, self.buf.drain(..MAX_LINE).collect()));
                continue;
            }
            break;
        }
        out
    }

    /// What is left at end of stream, as a final full record.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

/// Appends CRI records to a log file, rotating it to `<path>.1` past `max_bytes`.
pub struct CriWriter {
    path: PathBuf,
    max_bytes: u64,
    file: File,
    size: u64,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl CriWriter {
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, LogError> {
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = open_append(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes,
            file,
            size,
        })
    }

    /// Writes one record. A record is never split across files.
    pub fn write(&mut self, stream: Stream, partial: bool, text: &[u8]) -> Result<(), LogError> {
        let mut rec = Vec::with_capacity(text.len() + 48);
        rec.extend_from_slice(crate::util::time::now_rfc3339_nanos().as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_str().as_bytes());
        rec.extend_from_slice(if partial { b" P " } else { b" F " });
        rec.extend_from_slice(text);
        rec.push(b'\n');
        let io = |source| LogError::Io {
            path: self.path.clone(),
            source,
        };
        if self.max_bytes > 0 && self.size > 0 && self.size + rec.len() as u64 > self.max_bytes {
            std::fs::rename(&self.path, rotated(&self.path)).map_err(io)?;
            self.file = open_append(&self.path).map_err(io)?;
            self.size = 0;
        }
        self.file.write_all(&rec).map_err(io)?;
        self.size += rec.len() as u64;
        Ok(())
    }
}

/// `<log_path>.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// One parsed CRI record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: Stream,
    pub partial: bool,
    pub text: &'a str,
}

/// Parses one CRI line (without its newline); `None` for anything malformed.
pub fn parse_record(line: &str) -> Option<Record<'_>> {
    let (time, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    let stream = match stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let (tag, text) = match rest.split_once(' ') {
        Some((t, x)) => (t, x),
        None => (rest, ""),
    };
    let partial = match tag {
        "F" => false,
        "P" => true,
        _ => return None,
    };
    Some(Record {
        time,
        stream,
        partial,
        text,
    })
}

/// Turns CRI text into plain output lines (P records joined to the following record).
pub fn decode(cri: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in cri.lines() {
        let Some(rec) = parse_record(line) else {
            continue;
        };
        pending.push_str(rec.text);
        if !rec.partial {
            lines.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        lines.push(pending);
    }
    lines
}

fn join_lines(lines: &[String]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn read_lossy(path: &Path) -> Result<String, LogError> {
    match std::fs::read(path) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(LogError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Plain text of a container's log: the rotated file (`<log>.1`) then the current one, CRI
/// prefixes stripped, partial records joined, limited to the last `tail_lines` lines. A missing
/// file is an empty log. The previous container's log is simply another `log_path`.
pub fn read_tail(log_path: &Path, tail_lines: Option<u64>) -> Result<String, LogError> {
    let mut text = read_lossy(&rotated(log_path))?;
    text.push_str(&read_lossy(log_path)?);
    let lines = decode(&text);
    let skip = match tail_lines {
        Some(n) => lines
            .len()
            .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)),
        None => 0,
    };
    Ok(join_lines(&lines[skip..]))
}

/// Follows a log as the shim appends to it: sends the last `tail_lines` lines (all if `None`),
/// then every new complete line, polling every 200 ms and following rotation (the rest of the
/// renamed file is read before switching to the new one). Ends when the receiver is dropped.
pub fn follow(log_path: PathBuf, tail_lines: Option<u64>) -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut f = Follower::default();
        // The initial tail: read both files now, remember where the current one ended.
        let first = f.poll(&log_path, true);
        let mut lines = decode(&first);
        if let Some(n) = tail_lines {
            let skip = lines
                .len()
                .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
            lines.drain(..skip);
        }
        if !lines.is_empty() && tx.send(join_lines(&lines)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = tx.closed() => return,
            }
            let lp = log_path.clone();
            let (text, back) = match tokio::task::spawn_blocking(move || {
                let t = f.poll(&lp, false);
                (t, f)
            })
            .await
            {
                Ok(v) => v,
                Err(_) => return,
            };
            f = back;
            let lines = f.complete(&text);
            if !lines.is_empty() && tx.send(join_lines(&lines)).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// File position tracking for [`follow`].
#[derive(Default)]
struct Follower {
    file: Option<(File, u64)>,
    /// Raw CRI text not yet ending in a newline, plus a P record awaiting its end.
    carry: String,
    pending: String,
}

impl Follower {
    /// Reads whatever is new; on the first call also the rotated file.
    fn poll(&mut self, path: &Path, first: bool) -> String {
        let mut out = String::new();
        if first {
            out.push_str(&read_lossy(&rotated(path)).unwrap_or_default());
        }
        let current_ino = std::fs::metadata(path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.ino()
        });
        if let Some((file, ino)) = &mut self.file {
            let mut buf = Vec::new();
            let _ = file.read_to_end(&mut buf);
            out.push_str(&String::from_utf8_lossy(&buf));
            if current_ino != Some(*ino) {
                // Rotated (or truncated away): the old handle is drained, switch over.
                self.file = None;
            }
        }
        if self.file.is_none() {
            if let Ok(mut file) = File::open(path) {
                use std::os::unix::fs::MetadataExt;
                if let Ok(meta) = file.metadata() {
                    let mut buf = Vec::new();
                    let _ = file.read_to_end(&mut buf);
                    out.push_str(&String::from_utf8_lossy(&buf));
                    self.file = Some((file, meta.ino()));
                }
            }
        }
        if first {
            // The initial read is decoded whole by the caller; keep only an unfinished tail.
            if let Some(pos) = out.rfind('\n') {
                self.carry = out[pos + 1..].to_owned();
                out.truncate(pos + 1);
            } else {
                self.carry = std::mem::take(&mut out);
            }
        }
        out
    }

    /// Complete plain lines from newly read CRI text.
    fn complete(&mut self, text: &str) -> Vec<String> {
        self.carry.push_str(text);
        let Some(pos) = self.carry.rfind('\n') else {
            return Vec::new();
        };
        let ready: String = self.carry.drain(..=pos).collect();
        let mut out = Vec::new();
        for line in ready.lines() {
            if let Some(rec) = parse_record(line) {
                self.pending.push_str(rec.text);
                if !rec.partial {
                    out.push(std::mem::take(&mut self.pending));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_reads_full_and_partial_records() {
        let r = parse_record("2026-01-01T00:00:00.000000001Z stdout F hello world").unwrap();
        assert_eq!(
            (r.stream, r.partial, r.text),
            (Stream::Stdout, false, "hello world")
        );
        let r = parse_record("2026-01-01T00:00:00Z stderr P part").unwrap();
        assert_eq!(
            (r.stream, r.partial, r.text),
            (Stream::Stderr, true, "part")
        );
        let r = parse_record("2026-01-01T00:00:00Z stdout F").unwrap();
        assert_eq!(r.text, "");
        assert!(parse_record("garbage").is_none());
        assert!(parse_record("t stdin F x").is_none());
        assert!(parse_record("t stdout X x").is_none());
    }

    #[test]
    fn decode_joins_partials_and_skips_garbage() {
        let cri = "t stdout P ab\nt stdout P cd\nt stdout F ef\nnoise\nt stderr F  lead\n";
        assert_eq!(decode(cri), vec!["abcdef", " lead"]);
    }

    #[test]
    fn splitter_cuts_long_lines_and_keeps_the_rest() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"one\ntw"), vec![(false, b"one".to_vec())]);
        assert_eq!(s.feed(b"o\n"), vec![(false, b"two".to_vec())]);
        let long = vec![b'x'; MAX_LINE + 10];
        let recs = s.feed(&long);
        assert_eq!(recs.len(), 1);
        assert!(recs[0].0 && recs[0].1.len() == MAX_LINE);
        assert_eq!(s.feed(b"\n"), vec![(false, vec![b'x'; 10])]);
        assert_eq!(s.feed(b"end"), vec![]);
        assert_eq!(s.finish(), Some(b"end".to_vec()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn writer_rotates_and_tail_reads_across_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        let mut w = CriWriter::open(&log, 200).unwrap();
        for i in 0..10 {
            w.write(Stream::Stdout, false, format!("line {i}").as_bytes())
                .unwrap();
        }
        assert!(rotated(&log).exists());
        assert!(std::fs::metadata(&log).unwrap().len() <= 200);
        let tail = read_tail(&log, Some(2)).unwrap();
        assert_eq!(tail, "line 8\nline 9\n");
        let all = read_tail(&log, None).unwrap();
        assert!(all.ends_with("line 9\n"));
        assert_eq!(read_tail(&dir.path().join("none.log"), None).unwrap(), "");
    }

    #[tokio::test]
    async fn follow_sends_tail_then_appended_lines_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        let mut w = CriWriter::open(&log, 250).unwrap();
        w.write(Stream::Stdout, false, b"old").unwrap();
        w.write(Stream::Stdout, false, b"before").unwrap();
        let mut rx = follow(log.clone(), Some(1));
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert_eq!(first.as_deref(), Some("before\n"));
        w.write(Stream::Stdout, true, b"par").unwrap();
        w.write(Stream::Stderr, false, b"tial").unwrap();
        for i in 0..4 {
            w.write(Stream::Stdout, false, format!("after {i}").as_bytes())
                .unwrap();
        }
        let mut got = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !got.contains("after 3") {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(t)) => got.push_str(&t),
                _ => break,
            }
        }
        assert_eq!(got, "partial\nafter 0\nafter 1\nafter 2\nafter 3\n");
        assert!(rotated(&log).exists(), "the test must cross a rotation");
    }
}
