//! Replaying a finished run with a timeline: play/pause, speed, seek.
//!
//! Opening reads the log once, front to back, folding every event into a
//! [`RunModel`] and keeping, per event, only its byte offset and time. Every
//! [`CHECKPOINT_EVERY`] events a copy of the model is kept (its memory is
//! bounded by the series' capacities), so a seek restores the nearest copy
//! before the target and re-reads at most that many events from the file.
//!
//! Time is the log's own wall clock (`t` of each event), with any gap longer
//! than [`MAX_GAP`] seconds (a pause, a long probe) shortened to it; ×1 plays
//! the run as fast as it trained.

use super::app::{ReplayCommand, ReplayStatus};
use super::ingest::{parse_line, Parsed};
use super::run::RunModel;
use crate::rundir::{RunDir, RunLog};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Events between kept copies of the model.
pub const CHECKPOINT_EVERY: usize = 65_536;
/// Longest stretch of log time that plays as such; longer gaps are cut to this.
pub const MAX_GAP: f64 = 2.0;
/// Playback speeds.
pub const SPEEDS: [f64; 9] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
const READ_CHUNK: usize = 8 << 20;

/// What the timeline needs of one event.
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Byte offset of the event's line.
    offset: u64,
    /// Replay clock at the event (gap-capped seconds since the first event).
    clock: f64,
}

/// A finished run, ready to play.
pub struct Replay {
    path: PathBuf,
    run: RunDir,
    file: File,
    len: u64,
    marks: Vec<Mark>,
    /// Event indices of `phase_start` events.
    phase_starts: Vec<usize>,
    checkpoints: Vec<(usize, RunModel)>,
    /// Events applied so far.
    cursor: usize,
    clock: f64,
    playing: bool,
    speed: usize,
    /// Lines that were not events.
    pub skipped: u64,
    /// The last line was cut off mid-write.
    pub torn_tail: bool,
}

impl Replay {
    /// Read the log of the run at `path` (its directory, its log, or one of
    /// its snapshots). Returns the replay and the model of the whole run.
    pub fn open(path: &Path) -> Result<(Replay, RunModel)> {
        let RunLog { run, log } = RunLog::locate(path)?;
        let mut file =
            File::open(&log).with_context(|| format!("cannot open {}", log.display()))?;
        let mut marks = Vec::new();
        let mut phase_starts = Vec::new();
        let mut checkpoints = Vec::new();
        let mut model = RunModel::new();
        let mut skipped = 0u64;
        let mut torn_tail = false;
        let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let mut buf_offset = 0u64; // file offset of buf[0]
        let mut line_no = 0u64;
        let mut last_t: Option<f64> = None;
        let mut clock = 0.0;
        let mut eof = false;
        while !eof {
            let start = buf.len();
            buf.resize(start + READ_CHUNK, 0);
            let n = file
                .read(&mut buf[start..])
                .with_context(|| format!("cannot read {}", log.display()))?;
            buf.truncate(start + n);
            eof = n == 0;
            let mut pos = 0;
            loop {
                let nl = buf[pos..].iter().position(|&b| b == b'\n');
                let end = match (nl, eof) {
                    (Some(i), _) => pos + i,
                    (None, true) if pos < buf.len() => buf.len(),
                    _ => break,
                };
                line_no += 1;
                let line = &buf[pos..end];
                let offset = buf_offset + pos as u64;
                let is_last_unterminated = nl.is_none();
                pos = (end + 1).min(buf.len());
                let parsed = parse_line(line)
                    .with_context(|| format!("{}: line {line_no}", log.display()))?;
                let t = match &parsed {
                    Parsed::Blank => continue,
                    Parsed::Bad(reason) => {
                        if is_last_unterminated {
                            torn_tail = true;
                            tracing::warn!("{}: torn last line {line_no}", log.display());
                        } else {
                            skipped += 1;
                            tracing::warn!("{}: line {line_no} skipped: {reason}", log.display());
                        }
                        continue;
                    }
                    Parsed::Step(s) => s.t,
                    Parsed::Other(e) => e.time(),
                };
                if marks.len() % CHECKPOINT_EVERY == 0 {
                    checkpoints.push((marks.len(), model.clone()));
                }
                if let Parsed::Other(e) = &parsed {
                    if matches!(**e, crate::events::Event::PhaseStart(_)) {
                        phase_starts.push(marks.len());
                    }
                }
                if let Some(prev) = last_t {
                    let gap = t - prev;
                    if gap.is_finite() && gap > 0.0 {
                        clock += gap.min(MAX_GAP);
                    }
                }
                if t.is_finite() {
                    last_t = Some(last_t.map_or(t, |p: f64| p.max(t)));
                }
                marks.push(Mark { offset, clock });
                match parsed {
                    Parsed::Step(s) => model.apply_step(&s),
                    Parsed::Other(e) => model.apply(&e),
                    _ => {}
                }
            }
            buf.drain(..pos);
            buf_offset += pos as u64;
        }
        if marks.is_empty() {
            if line_no == 0 {
                bail!("{} is empty: not a driftui event log", log.display());
            }
            bail!(
                "{} is not a driftui event log: none of its {line_no} lines is an event",
                log.display()
            );
        }
        let len = file.seek(SeekFrom::End(0))?;
        // Logs without a clock still play: a twentieth of a second per event.
        if marks.last().is_some_and(|m| m.clock <= 0.0) {
            for (i, m) in marks.iter_mut().enumerate() {
                m.clock = i as f64 * 0.05;
            }
        }
        let replay = Replay {
            path: log,
            run,
            file,
            len,
            marks,
            phase_starts,
            checkpoints,
            cursor: 0,
            clock: 0.0,
            playing: true,
            speed: 2,
            skipped,
            torn_tail,
        };
        Ok((replay, model))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run the log belongs to.
    pub fn run_dir(&self) -> &RunDir {
        &self.run
    }

    pub fn len(&self) -> usize {
        self.marks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    pub fn is_playing(&self) -> bool {
        self.playing
    }

    pub fn speed(&self) -> f64 {
        SPEEDS[self.speed]
    }

    /// For the timeline panel.
    pub fn status(&self) -> ReplayStatus {
        ReplayStatus {
            position: self.cursor,
            total: self.marks.len(),
            playing: self.playing,
            speed: self.speed(),
            clock: self.clock,
            duration: self.marks.last().map_or(0.0, |m| m.clock),
        }
    }

    /// Real seconds until the next event is due at the present speed, if playing.
    pub fn next_due_in(&self) -> Option<f64> {
        if !self.playing {
            return None;
        }
        let next = self.marks.get(self.cursor)?;
        Some(((next.clock - self.clock) / self.speed()).max(0.0))
    }

    /// Let `real_seconds` of playback pass: apply every event that became due.
    /// Returns whether any was applied.
    pub fn advance(&mut self, real_seconds: f64, model: &mut RunModel) -> Result<bool> {
        if !self.playing {
            return Ok(false);
        }
        self.clock += real_seconds * self.speed();
        let target = self.marks.partition_point(|m| m.clock <= self.clock);
        let moved = target > self.cursor;
        if moved {
            self.apply_range(self.cursor, target, model)?;
            self.cursor = target;
        }
        if self.cursor >= self.marks.len() {
            self.playing = false;
            self.clock = self.marks.last().map_or(0.0, |m| m.clock);
        }
        Ok(moved)
    }

    /// Carry out a timeline command; `model` follows the cursor.
    pub fn command(&mut self, cmd: ReplayCommand, model: &mut RunModel) -> Result<()> {
        match cmd {
            ReplayCommand::PlayPause => {
                if !self.playing && self.cursor >= self.marks.len() {
                    self.seek(0, model)?; // play again from the start
                }
                self.playing = !self.playing;
            }
            ReplayCommand::Faster => self.speed = (self.speed + 1).min(SPEEDS.len() - 1),
            ReplayCommand::Slower => self.speed = self.speed.saturating_sub(1),
            ReplayCommand::SeekPercent(p) => {
                let step = (self.marks.len() as i64 * p.abs() as i64 / 100).max(1);
                let target = if p < 0 {
                    self.cursor as i64 - step
                } else {
                    self.cursor as i64 + step
                };
                self.seek(target.clamp(0, self.marks.len() as i64) as usize, model)?;
            }
            ReplayCommand::PrevPhase => {
                // Back to this phase's start, or the one before if already there.
                let target = self
                    .phase_starts
                    .iter()
                    .rev()
                    .find(|&&i| i + 1 < self.cursor)
                    .map(|&i| i + 1)
                    .unwrap_or(0);
                self.seek(target, model)?;
            }
            ReplayCommand::NextPhase => {
                let target = self
                    .phase_starts
                    .iter()
                    .find(|&&i| i + 1 > self.cursor)
                    .map(|&i| i + 1)
                    .unwrap_or(self.marks.len());
                self.seek(target, model)?;
            }
            ReplayCommand::Start => self.seek(0, model)?,
            ReplayCommand::End => self.seek(self.marks.len(), model)?,
        }
        Ok(())
    }

    /// Move so that exactly the first `target` events are applied.
    pub fn seek(&mut self, target: usize, model: &mut RunModel) -> Result<()> {
        let target = target.min(self.marks.len());
        let from_here = target >= self.cursor && target - self.cursor <= CHECKPOINT_EVERY
            || self
                .checkpoints
                .iter()
                .rev()
                .find(|(i, _)| *i <= target)
                .is_some_and(|(i, _)| *i <= self.cursor && self.cursor <= target);
        if !from_here {
            let (i, m) = self
                .checkpoints
                .iter()
                .rev()
                .find(|(i, _)| *i <= target)
                .context("replay has no starting point")?;
            *model = m.clone();
            self.cursor = *i;
        }
        self.apply_range(self.cursor, target, model)?;
        self.cursor = target;
        if target >= self.marks.len() {
            self.playing = false;
        }
        self.clock = if target == 0 {
            0.0
        } else {
            self.marks[target - 1].clock
        };
        Ok(())
    }

    /// Re-read events `from..to` from the file and fold them in.
    fn apply_range(&mut self, from: usize, to: usize, model: &mut RunModel) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let start = self.marks[from].offset;
        let end = self.marks.get(to).map_or(self.len, |m| m.offset);
        let mut bytes = vec![0u8; (end - start) as usize];
        self.file.seek(SeekFrom::Start(start))?;
        self.file
            .read_exact(&mut bytes)
            .with_context(|| format!("{} changed while replaying it", self.path.display()))?;
        let mut applied = 0;
        for line in bytes.split(|&b| b == b'\n') {
            if applied == to - from {
                break;
            }
            match parse_line(line)? {
                Parsed::Step(s) => model.apply_step(&s),
                Parsed::Other(e) => model.apply(&e),
                Parsed::Blank | Parsed::Bad(_) => continue,
            }
            applied += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/sample-run.jsonl")
    }

    #[test]
    fn seeking_anywhere_equals_playing_up_to_there() {
        let (mut replay, whole) = Replay::open(&fixture()).unwrap();
        let n = replay.len();
        assert!(n > 200);
        let mut model = RunModel::new();
        replay.seek(n, &mut model).unwrap();
        assert_eq!(model.global_step, whole.global_step);
        assert_eq!(model.events, whole.events);
        for target in [n / 3, 10, n - 1, 0, n / 2] {
            replay.seek(target, &mut model).unwrap();
            let mut fresh = RunModel::new();
            let (mut other, _) = Replay::open(&fixture()).unwrap();
            other.apply_range(0, target, &mut fresh).unwrap();
            assert_eq!(model.events, target as u64);
            assert_eq!(model.global_step, fresh.global_step);
            assert_eq!(model.probes, fresh.probes);
            assert_eq!(
                model.series.get("loss").map(|s| s.len()),
                fresh.series.get("loss").map(|s| s.len())
            );
        }
    }

    #[test]
    fn playback_follows_the_log_clock_with_gaps_capped() {
        let (mut replay, _) = Replay::open(&fixture()).unwrap();
        let mut model = RunModel::new();
        assert!(replay.is_playing());
        // The pause of 12 s in the log plays as MAX_GAP.
        let d = replay.status().duration;
        assert!(d > 60.0 && d < 250.0, "duration {d}");
        replay.advance(5.0, &mut model).unwrap();
        let at_5 = model.global_step;
        assert!(at_5 > 3 && at_5 < 20, "{at_5}");
        replay.command(ReplayCommand::Faster, &mut model).unwrap();
        assert_eq!(replay.speed(), 2.0);
        replay.advance(5.0, &mut model).unwrap();
        assert!(model.global_step > at_5 + 10);
        replay.command(ReplayCommand::End, &mut model).unwrap();
        assert!(!replay.is_playing(), "the end stops playback");
        assert_eq!(model.global_step, 180);
        assert_eq!(model.ended, Some(crate::events::RunStatus::Completed));
    }

    #[test]
    fn phase_keys_jump_to_phase_starts() {
        let (mut replay, _) = Replay::open(&fixture()).unwrap();
        let mut model = RunModel::new();
        replay
            .command(ReplayCommand::NextPhase, &mut model)
            .unwrap();
        assert_eq!(model.phase, Some(0));
        replay
            .command(ReplayCommand::NextPhase, &mut model)
            .unwrap();
        assert_eq!(model.phase, Some(1));
        assert_eq!(model.global_step, 120);
        replay
            .command(ReplayCommand::PrevPhase, &mut model)
            .unwrap();
        assert_eq!(model.phase, Some(0));
        assert_eq!(model.global_step, 0);
    }

    #[test]
    fn bad_paths_and_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = Replay::open(&dir.path().join("nope"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        let err = Replay::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("not a run"), "{err}");
        let f = dir.path().join("x.jsonl");
        std::fs::write(&f, "hello\nworld\n").unwrap();
        let err = Replay::open(&f).err().unwrap().to_string();
        assert!(err.contains("none of its 2 lines"), "{err}");
        std::fs::write(&f, "").unwrap();
        let err = Replay::open(&f).err().unwrap().to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
