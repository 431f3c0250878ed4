//! Following a log that another process is still writing.
//!
//! [`Follower`] reads only the bytes appended since its last poll and notices
//! when the file was truncated or re-created (then it starts over from the
//! first byte and says so). [`follow`] drives a follower from file-system
//! notifications (`notify`), debounced, on a thread of its own, and sends
//! what it read over a channel.
//!
//! The byte format is a [`LogFormat`]: driftui's own `events.jsonl` through
//! [`LogReader`] today. An importer for another trainer's log (TRL's
//! `trainer_state.json`, LLaMA-Factory's `trainer_log.jsonl`) implements the
//! same trait, mapping its records onto [`Event`]s; one whose file is
//! rewritten whole rather than appended to returns `true` from
//! [`LogFormat::rewritten_whole`], and the follower re-reads it from the start
//! on every change.

use super::{Event, LogReader};
use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

/// How a log's bytes become events.
pub trait LogFormat: Send + 'static {
    /// Parse the bytes that follow what was fed before.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<()>;
    /// Forget everything: the file starts over.
    fn reset(&mut self);
    /// Lines that could not be read so far.
    fn skipped(&self) -> u64;
    /// The writer replaces the whole file on each update (JSON documents).
    fn rewritten_whole(&self) -> bool {
        false
    }
}

impl LogFormat for LogReader {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<()> {
        LogReader::feed(self, bytes, out)
    }
    fn reset(&mut self) {
        LogReader::reset(self)
    }
    fn skipped(&self) -> u64 {
        self.report.skipped.len() as u64
    }
}

/// What one poll found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FollowUpdate {
    /// The file was truncated or replaced: drop what was read from it before.
    pub restarted: bool,
    /// New events, in order.
    pub events: Vec<Event>,
    /// Unreadable lines so far (since the last restart).
    pub skipped: u64,
    /// The file does not exist (yet, or any more).
    pub missing: bool,
}

impl FollowUpdate {
    fn is_news(&self, was_missing: bool) -> bool {
        self.restarted || !self.events.is_empty() || self.missing != was_missing
    }
}

/// How many leading bytes identify "the same file" across polls.
const HEAD_LEN: usize = 256;

/// Reads a growing file incrementally.
pub struct Follower<F: LogFormat = LogReader> {
    path: PathBuf,
    format: F,
    /// Bytes consumed so far.
    pos: u64,
    /// The first bytes seen, to notice a file rewritten in place.
    head: Vec<u8>,
    #[cfg(unix)]
    inode: Option<(u64, u64)>,
    missing: bool,
    last_skipped: u64,
}

impl Follower<LogReader> {
    /// Follow driftui's `events.jsonl` at `path`.
    pub fn events_jsonl(path: &Path) -> Self {
        Follower::new(path, LogReader::new())
    }
}

impl<F: LogFormat> Follower<F> {
    pub fn new(path: &Path, format: F) -> Self {
        Self {
            path: path.to_path_buf(),
            format,
            pos: 0,
            head: Vec::new(),
            #[cfg(unix)]
            inode: None,
            missing: false,
            last_skipped: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read what was appended since the last poll. Fails on I/O errors other
    /// than the file being absent, and on a log the format refuses (a newer
    /// schema).
    pub fn poll(&mut self) -> Result<FollowUpdate> {
        let mut update = FollowUpdate::default();
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.missing = true;
                update.missing = true;
                update.skipped = self.last_skipped;
                return Ok(update);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open {}", self.path.display()))
            }
        };
        self.missing = false;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        let len = meta.len();
        let mut restart = len < self.pos || self.format.rewritten_whole();
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let id = (meta.dev(), meta.ino());
            if self.inode.is_some_and(|old| old != id) {
                restart = true;
            }
            self.inode = Some(id);
        }
        if !restart && !self.head.is_empty() {
            let mut now = vec![0u8; self.head.len()];
            let same = file.read_exact(&mut now).is_ok() && now == self.head;
            restart = !same;
        }
        if restart && (self.pos > 0 || !self.head.is_empty()) {
            self.format.reset();
            self.pos = 0;
            self.head.clear();
            update.restarted = true;
        }
        if len > self.pos {
            file.seek(SeekFrom::Start(self.pos))?;
            let mut bytes = Vec::with_capacity((len - self.pos) as usize);
            file.take(len - self.pos)
                .read_to_end(&mut bytes)
                .with_context(|| format!("cannot read {}", self.path.display()))?;
            if self.head.len() < HEAD_LEN && self.pos == self.head.len() as u64 {
                let want = (HEAD_LEN - self.head.len()).min(bytes.len());
                self.head.extend_from_slice(&bytes[..want]);
            }
            self.pos += bytes.len() as u64;
            self.format
                .feed(&bytes, &mut update.events)
                .with_context(|| format!("in {}", self.path.display()))?;
        }
        self.last_skipped = self.format.skipped();
        update.skipped = self.last_skipped;
        Ok(update)
    }
}

/// Quiet time after a change before reading, so a burst of writes is read once.
pub const DEBOUNCE: Duration = Duration::from_millis(40);
/// Longest wait under a constant stream of writes.
const DEBOUNCE_MAX: Duration = Duration::from_millis(200);
/// Poll anyway this often, for file systems whose notifications are missing.
const FALLBACK_POLL: Duration = Duration::from_secs(2);

/// Anything [`follow_source`] can drive: a poll that reports what is new,
/// and the paths whose changes call for one.
pub trait Poll: Send + 'static {
    fn poll(&mut self) -> Result<FollowUpdate>;
    /// Paths to watch, and whether below them too.
    fn watched(&self) -> Vec<(PathBuf, bool)>;
}

impl<F: LogFormat> Poll for Follower<F> {
    fn poll(&mut self) -> Result<FollowUpdate> {
        Follower::poll(self)
    }
    fn watched(&self) -> Vec<(PathBuf, bool)> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        vec![(dir, false)]
    }
}

/// One message of a running watch.
pub type WatchMessage = std::result::Result<FollowUpdate, String>;

/// Keeps a watch alive; dropping it stops the watcher thread.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    path: PathBuf,
}

impl WatchHandle {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Follow `follower`'s file: its first poll is returned at once (so a newer
/// schema or unreadable file fails here), later ones arrive on the channel.
pub fn follow<F: LogFormat>(
    follower: Follower<F>,
) -> Result<(
    FollowUpdate,
    tokio::sync::mpsc::Receiver<WatchMessage>,
    WatchHandle,
)> {
    let path = follower.path().to_path_buf();
    let name = path.file_name().map(|n| n.to_os_string());
    // Only changes to the file itself call for a read.
    let ours = move |p: &Path| p.file_name().map(|n| n.to_os_string()) == name;
    follow_filtered(follower, path, ours)
}

/// Follow any source of events (several files, a directory of
/// checkpoints): every change under its watched paths calls for a poll.
pub fn follow_source<P: Poll>(
    source: P,
    shown_as: &Path,
) -> Result<(
    FollowUpdate,
    tokio::sync::mpsc::Receiver<WatchMessage>,
    WatchHandle,
)> {
    follow_filtered(source, shown_as.to_path_buf(), |_| true)
}

fn follow_filtered<P: Poll>(
    mut source: P,
    path: PathBuf,
    ours: impl Fn(&Path) -> bool + Send + 'static,
) -> Result<(
    FollowUpdate,
    tokio::sync::mpsc::Receiver<WatchMessage>,
    WatchHandle,
)> {
    let watched = source.watched();
    for (dir, _) in &watched {
        if !dir.is_dir() {
            anyhow::bail!("{} does not exist", dir.display());
        }
    }
    let first = source.poll()?;
    let (signal_tx, signal_rx) = std_mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let wanted = match &res {
            Ok(ev) => ev.paths.is_empty() || ev.paths.iter().any(|p| ours(p)),
            Err(_) => true,
        };
        if wanted {
            let _ = signal_tx.send(());
        }
    })
    .context("cannot start the file watcher")?;
    // Directories, not files: a re-created file is a new inode.
    for (dir, recursive) in &watched {
        let mode = if *recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher
            .watch(dir, mode)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut was_missing = first.missing;
    std::thread::Builder::new()
        .name("driftui-watch".into())
        .spawn(move || loop {
            match signal_rx.recv_timeout(FALLBACK_POLL) {
                Ok(()) => {
                    let start = Instant::now();
                    while start.elapsed() < DEBOUNCE_MAX && signal_rx.recv_timeout(DEBOUNCE).is_ok()
                    {
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let msg = match source.poll() {
                Ok(u) if !u.is_news(was_missing) => continue,
                Ok(u) => {
                    was_missing = u.missing;
                    Ok(u)
                }
                Err(e) => Err(format!("{e:#}")),
            };
            if tx.blocking_send(msg).is_err() {
                return;
            }
        })
        .context("cannot start the watch thread")?;
    Ok((
        first,
        rx,
        WatchHandle {
            _watcher: watcher,
            path,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Alert, EventLog};
    use std::io::Write;

    fn alert(msg: &str) -> Event {
        Event::Alert(Alert {
            t: 1.0,
            level: crate::events::AlertLevel::Warning,
            message: msg.into(),
            global_step: 0,
        })
    }

    fn messages(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Alert(a) => a.message.clone(),
                other => other.kind().to_string(),
            })
            .collect()
    }

    #[test]
    fn follower_reads_appends_and_restarts_on_truncation_and_recreation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut f = Follower::events_jsonl(&path);
        assert!(f.poll().unwrap().missing);
        let mut log = EventLog::open(&path).unwrap();
        log.append(&alert("a")).unwrap();
        log.append(&alert("b")).unwrap();
        let u = f.poll().unwrap();
        assert_eq!(messages(&u.events), ["a", "b"]);
        assert!(!u.restarted);
        // A half-written line waits for its end.
        let mut raw = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let line = serde_json::to_string(&alert("c")).unwrap();
        raw.write_all(&line.as_bytes()[..10]).unwrap();
        assert!(f.poll().unwrap().events.is_empty());
        raw.write_all(&line.as_bytes()[10..]).unwrap();
        raw.write_all(b"\ngarbage\n").unwrap();
        let u = f.poll().unwrap();
        assert_eq!(messages(&u.events), ["c"]);
        assert_eq!(u.skipped, 1);
        // Truncated and rewritten with different, longer content.
        drop(log);
        std::fs::write(
            &path,
            format!(
                "{}\n{}\n{}\n{}\n{}\n",
                serde_json::to_string(&alert("x1")).unwrap(),
                serde_json::to_string(&alert("x2")).unwrap(),
                serde_json::to_string(&alert("x3")).unwrap(),
                serde_json::to_string(&alert("x4")).unwrap(),
                serde_json::to_string(&alert("x5")).unwrap(),
            ),
        )
        .unwrap();
        let u = f.poll().unwrap();
        assert!(u.restarted);
        assert_eq!(messages(&u.events), ["x1", "x2", "x3", "x4", "x5"]);
        assert_eq!(u.skipped, 0);
        // Removed, then re-created.
        std::fs::remove_file(&path).unwrap();
        assert!(f.poll().unwrap().missing);
        let mut log = EventLog::open(&path).unwrap();
        log.append(&alert("new")).unwrap();
        let u = f.poll().unwrap();
        assert!(u.restarted);
        assert_eq!(messages(&u.events), ["new"]);
    }

    #[test]
    fn newer_schema_fails_the_first_poll() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"kind\":\"run_start\",\"schema\":99,\"t\":0,\"run\":\"x\",\"seed\":1,\"model\":{\"source\":\"a\",\"architecture\":\"b\",\"parameters\":1,\"trainable\":1,\"dtype\":\"f32\",\"device\":\"cpu\"},\"phases\":[]}\n").unwrap();
        let err = follow(Follower::events_jsonl(&path)).err().unwrap();
        assert!(format!("{err:#}").contains("schema version 99"), "{err:#}");
    }

    /// Real notifications: appends arrive, a truncation restarts.
    #[test]
    fn follow_delivers_appends_and_truncation_through_notify() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::open(&path).unwrap();
        log.append(&alert("one")).unwrap();
        let (first, mut rx, _handle) = follow(Follower::events_jsonl(&path)).unwrap();
        assert_eq!(messages(&first.events), ["one"]);
        let next = |rx: &mut tokio::sync::mpsc::Receiver<WatchMessage>| {
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await
                    .expect("no update within 5 s")
                    .expect("watch ended")
                    .expect("watch failed")
            })
        };
        log.append(&alert("two")).unwrap();
        log.append(&alert("three")).unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            got.extend(messages(&next(&mut rx).events));
        }
        assert_eq!(got, ["two", "three"]);
        drop(log);
        std::fs::write(&path, "").unwrap();
        let mut log = EventLog::open(&path).unwrap();
        log.append(&alert("again")).unwrap();
        let mut restarted = false;
        let mut got = Vec::new();
        while got.is_empty() {
            let u = next(&mut rx);
            restarted |= u.restarted;
            got.extend(messages(&u.events));
        }
        assert!(restarted);
        assert_eq!(got, ["again"]);
    }
}
