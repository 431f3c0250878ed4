//! Writing and reading `events.jsonl`.

use super::{Event, SCHEMA_VERSION};
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Append-only writer: one line per event, flushed before `append` returns, so
/// a process killed mid-run leaves only complete lines (plus at most one torn
/// last line, which readers skip).
pub struct EventLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventLog {
    /// Open `path` for appending, creating it if needed.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the event log {}", path.display()))?;
        // A torn last line from an earlier crash would glue onto our first
        // record: start on a fresh line.
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut out = BufWriter::new(file);
        if len > 0 && !ends_with_newline(path)? {
            out.write_all(b"\n")?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            out,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write one event as one line and flush it to the OS.
    pub fn append(&mut self, event: &Event) -> Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        self.out
            .write_all(&line)
            .and_then(|_| self.out.flush())
            .with_context(|| format!("cannot write to {}", self.path.display()))
    }

    /// Flush and ask the OS to put the log on disk (at phase ends and run end).
    pub fn sync(&mut self) -> Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        Ok(())
    }
}

fn ends_with_newline(path: &Path) -> Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(b[0] == b'\n')
}

/// What reading a log found besides its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadReport {
    /// Lines that were not valid events: (1-based line number, reason).
    pub skipped: Vec<(u64, String)>,
    /// The file ended in a line without a newline that did not parse (a crash
    /// mid-write); it is not counted in `skipped`.
    pub torn_tail: bool,
}

/// Incremental parser: feed it bytes as they arrive (a whole file, or what a
/// watcher read since last time) and take the complete events out.
#[derive(Debug, Default)]
pub struct LogReader {
    pending: Vec<u8>,
    line_no: u64,
    pub report: ReadReport,
    schema_checked: bool,
}

impl LogReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget the position, as when the file was truncated or re-created.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Parse every complete line in `bytes` (after what was pending).
    /// Fails only on a log of a newer schema than this build reads.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(bytes);
        let mut start = 0;
        let mut result = Ok(());
        while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            self.line_no += 1;
            result = self.parse_line(&pending[start..end], out);
            start = end + 1;
            if result.is_err() {
                break;
            }
        }
        pending.drain(..start);
        self.pending = pending;
        result
    }

    /// End of input: a last line without newline is parsed if whole, else
    /// reported as torn.
    pub fn finish(&mut self, out: &mut Vec<Event>) -> Result<()> {
        if self.pending.iter().all(|b| b.is_ascii_whitespace()) {
            self.pending.clear();
            return Ok(());
        }
        let line = std::mem::take(&mut self.pending);
        self.line_no += 1;
        match serde_json::from_slice::<Event>(&line) {
            Ok(e) => {
                self.check_schema(&e)?;
                out.push(e);
            }
            Err(_) => self.report.torn_tail = true,
        }
        Ok(())
    }

    /// Bytes held back because their line is not complete yet.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn parse_line(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<()> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        match serde_json::from_str::<Event>(text) {
            Ok(e) => {
                self.check_schema(&e)?;
                out.push(e);
            }
            Err(err) => self.report.skipped.push((self.line_no, err.to_string())),
        }
        Ok(())
    }

    fn check_schema(&mut self, e: &Event) -> Result<()> {
        if let Event::RunStart(rs) = e {
            if rs.schema > SCHEMA_VERSION {
                bail!(
                    "line {}: this log has schema version {}, newer than this driftui reads ({}); \
                     update driftui to open it",
                    self.line_no,
                    rs.schema,
                    SCHEMA_VERSION
                );
            }
            self.schema_checked = true;
        }
        Ok(())
    }
}

/// Read a whole log file. Bad lines are skipped and reported, never fatal; a
/// log of a newer schema is an error.
pub fn read_log(path: &Path) -> Result<(Vec<Event>, ReadReport)> {
    let mut bytes = Vec::new();
    File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = LogReader::new();
    let mut events = Vec::new();
    reader
        .feed(&bytes, &mut events)
        .and_then(|_| reader.finish(&mut events))
        .with_context(|| format!("in {}", path.display()))?;
    Ok((events, reader.report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Alert, Marker};

    fn alert(msg: &str) -> Event {
        Event::Alert(Alert {
            t: 0.0,
            level: crate::events::AlertLevel::Warning,
            message: msg.into(),
            global_step: 0,
        })
    }

    #[test]
    fn torn_last_line_is_skipped_and_next_writer_starts_fresh_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        {
            let mut log = EventLog::open(&path).unwrap();
            log.append(&alert("one")).unwrap();
        }
        // Simulate a crash mid-write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"kind":"alert","t":0.0,"lev"#).unwrap();
        drop(f);
        let (events, report) = read_log(&path).unwrap();
        assert_eq!(events, vec![alert("one")]);
        assert!(report.torn_tail);
        assert!(report.skipped.is_empty());

        let mut log = EventLog::open(&path).unwrap();
        log.append(&alert("two")).unwrap();
        let (events, report) = read_log(&path).unwrap();
        assert_eq!(events, vec![alert("one"), alert("two")]);
        // The torn line is now a complete bad line in the middle.
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].0, 2);
    }

    #[test]
    fn incremental_feed_equals_whole_read() {
        let mut text = String::new();
        for i in 0..5 {
            text.push_str(&serde_json::to_string(&alert(&format!("m{i}"))).unwrap());
            text.push('\n');
        }
        let bytes = text.as_bytes();
        let mut reader = LogReader::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(7) {
            reader.feed(chunk, &mut out).unwrap();
        }
        reader.finish(&mut out).unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(out[4], alert("m4"));
    }

    #[test]
    fn newer_schema_is_a_clear_error() {
        let line = r#"{"kind":"run_start","schema":99,"t":0,"run":"x","seed":1,"model":{"source":"a","architecture":"b","parameters":1,"trainable":1,"dtype":"f32","device":"cpu"},"phases":[]}"#;
        let mut reader = LogReader::new();
        let err = reader
            .feed(format!("{line}\n").as_bytes(), &mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[test]
    fn garbage_line_is_counted_not_fatal() {
        let m = Event::Pause(Marker {
            t: 1.0,
            global_step: 2,
            reason: String::new(),
        });
        let text = format!(
            "{}\nnot json\n{{\"kind\":\"mystery\"}}\n{}\n",
            serde_json::to_string(&m).unwrap(),
            serde_json::to_string(&m).unwrap()
        );
        let mut reader = LogReader::new();
        let mut out = Vec::new();
        reader.feed(text.as_bytes(), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        let lines: Vec<u64> = reader.report.skipped.iter().map(|s| s.0).collect();
        assert_eq!(lines, vec![2, 3]);
    }
}
