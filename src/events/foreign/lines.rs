//! Line-by-line logs: LLaMA-Factory's `trainer_log.jsonl`, torchtune's
//! disk log, verl's file log. Each line is one logged step; the file only
//! grows, so a [`Follower`](crate::events::watch::Follower) feeds the new
//! bytes to [`Lines`].
//!
//! Times: LLaMA-Factory logs the seconds since training began, anchored at
//! the file's modification time (when its last line was written); torchtune
//! and verl log none, so the steps already in the file when it is first
//! read are spread evenly from the file's start (torchtune's file name is
//! its opening time; verl's file: its creation time) to its modification
//! time, and later steps get the time they were read.

use super::{end_event, mtime, plan_event, step_event, Logged};
use crate::events::watch::LogFormat;
use crate::events::Event;
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What one line says.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Step {
        logged: Logged,
        /// Seconds since training began, when the log says.
        elapsed: Option<f64>,
        /// Planned steps, when the log says.
        total: Option<u64>,
        /// Tokens seen so far (cumulative), when the log says.
        tokens_so_far: Option<f64>,
    },
    /// A line that is not a training step (an evaluation's progress).
    Other,
    /// Not readable: why.
    Bad(String),
}

/// One program's line syntax.
pub trait LineSyntax: Clone + Send + 'static {
    fn parse(&self, line: &str) -> Line;
    /// The file's opening time, when its name says it.
    fn started(&self, _path: &Path) -> Option<f64> {
        None
    }
}

/// The line formats behind one object, for readers that pick one at run time.
pub trait LineFormat {
    fn feed_bytes(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<()>;
    /// End of input: a last line without its newline is read if whole.
    fn finish(&mut self, out: &mut Vec<Event>);
    fn skipped_lines(&self) -> u64;
}

/// Reads a line log of syntax `S` into the events of one phase.
pub struct Lines<S: LineSyntax> {
    path: PathBuf,
    syntax: S,
    pending: Vec<u8>,
    line_no: u64,
    /// Unreadable lines: (1-based line, reason).
    pub skipped: Vec<(u64, String)>,
    anchor: Option<f64>,
    last_step: Option<u64>,
    last_t: Option<f64>,
    last_tokens: Option<f64>,
    total_sent: Option<u64>,
    ended: bool,
    batches: u64,
}

impl<S: LineSyntax> Lines<S> {
    pub fn new(path: &Path, syntax: S) -> Self {
        Self {
            path: path.to_path_buf(),
            syntax,
            pending: Vec::new(),
            line_no: 0,
            skipped: Vec::new(),
            anchor: None,
            last_step: None,
            last_t: None,
            last_tokens: None,
            total_sent: None,
            ended: false,
            batches: 0,
        }
    }

    fn lines_of(&mut self, text: &str) -> Vec<(u64, Line)> {
        let mut got = Vec::new();
        for raw in text.split('\n') {
            self.line_no += 1;
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            match self.syntax.parse(line) {
                Line::Bad(why) => self.skipped.push((self.line_no, why)),
                Line::Other => {}
                step => got.push((self.line_no, step)),
            }
        }
        got
    }

    /// Turn a batch of parsed lines into events, with times.
    fn emit(&mut self, batch: Vec<(u64, Line)>, out: &mut Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        self.batches += 1;
        let now = crate::events::now();
        let modified = mtime(&self.path).unwrap_or(now);
        let last_elapsed = batch.iter().rev().find_map(|(_, l)| match l {
            Line::Step { elapsed, .. } => *elapsed,
            _ => None,
        });
        if self.anchor.is_none() {
            if let Some(e) = last_elapsed {
                self.anchor = Some(modified - e);
            }
        }
        let first_read = self.batches == 1;
        let start = self
            .syntax
            .started(&self.path)
            .or_else(|| created(&self.path));
        let last_in_batch = batch
            .iter()
            .filter_map(|(_, l)| match l {
                Line::Step { logged, .. } => Some(logged.step),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        for (_, line) in batch {
            let Line::Step {
                mut logged,
                elapsed,
                total,
                tokens_so_far,
            } = line
            else {
                continue;
            };
            let t = match (elapsed, self.anchor) {
                (Some(e), Some(a)) => a + e,
                _ if first_read => match start {
                    // Spread evenly from the file's start to its last write.
                    Some(s) if last_in_batch > 0 && s < modified => {
                        s + (modified - s) * logged.step as f64 / last_in_batch as f64
                    }
                    _ => modified,
                },
                _ => now,
            };
            logged.t = Some(t);
            if let Some(total) = total.filter(|t| *t > 0) {
                if self.total_sent != Some(total) {
                    self.total_sent = Some(total);
                    out.push(plan_event(t, total));
                }
            }
            let tokens = match (tokens_so_far, self.last_tokens) {
                (Some(now_), Some(before)) => (now_ - before).max(0.0) as u64,
                (Some(now_), None) => now_.max(0.0) as u64,
                _ => 0,
            };
            if tokens_so_far.is_some() {
                self.last_tokens = tokens_so_far;
            }
            let seconds = match (self.last_t, self.last_step) {
                (Some(lt), Some(ls)) if logged.step > ls => {
                    (t - lt).max(0.0) / (logged.step - ls) as f64
                }
                _ => 0.0,
            };
            let step = logged.step;
            out.push(Event::Step(step_event(logged, seconds, tokens)));
            self.last_t = Some(t);
            self.last_step = Some(step);
            if !self.ended && self.total_sent.is_some_and(|tot| step >= tot) {
                self.ended = true;
                out.push(end_event(t, step));
            }
        }
    }

    pub fn boxed(self) -> Box<dyn LineFormat>
    where
        S: 'static,
    {
        Box::new(self)
    }
}

impl<S: LineSyntax> LineFormat for Lines<S> {
    fn feed_bytes(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<()> {
        self.pending.extend_from_slice(bytes);
        let Some(last_nl) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let complete: Vec<u8> = self.pending.drain(..=last_nl).collect();
        let text = String::from_utf8_lossy(&complete[..complete.len() - 1]).to_string();
        let batch = self.lines_of(&text);
        self.emit(batch, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Event>) {
        let rest = std::mem::take(&mut self.pending);
        let text = String::from_utf8_lossy(&rest).to_string();
        if text.trim().is_empty() {
            return;
        }
        let batch = self.lines_of(&text);
        self.emit(batch, out);
    }

    fn skipped_lines(&self) -> u64 {
        self.skipped.len() as u64
    }
}

impl<S: LineSyntax> LogFormat for Lines<S> {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<()> {
        self.feed_bytes(bytes, out)
    }
    fn reset(&mut self) {
        *self = Lines::new(&self.path.clone(), self.syntax.clone());
    }
    fn skipped(&self) -> u64 {
        self.skipped.len() as u64
    }
}

/// The file's creation time where the file system keeps one, else none.
fn created(path: &Path) -> Option<f64> {
    let c = std::fs::metadata(path).ok()?.created().ok()?;
    c.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// The numbers of a JSON object, by name (strings, lists and nulls are not metrics).
fn numbers(o: &serde_json::Map<String, Value>, skip: &[&str]) -> BTreeMap<String, f64> {
    o.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .filter_map(|(k, v)| match v {
            Value::Number(n) => n.as_f64().map(|f| (k.clone(), f)),
            _ => None,
        })
        .collect()
}

/// LLaMA-Factory's `trainer_log.jsonl` (`LogCallback.on_log`): `current_steps`,
/// `total_steps`, `loss`, `lr`, `epoch`, `accuracy`, `reward`, `eval_loss`,
/// `throughput`, `total_tokens`, `percentage`, `elapsed_time` ("H:MM:SS").
#[derive(Debug, Clone, Copy, Default)]
pub struct LlamaFactory;

impl LineSyntax for LlamaFactory {
    fn parse(&self, line: &str) -> Line {
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return Line::Bad(e.to_string()),
        };
        let Some(o) = v.as_object() else {
            return Line::Bad("not a JSON object".into());
        };
        let Some(step) = o.get("current_steps").and_then(Value::as_u64) else {
            return Line::Bad("no current_steps".into());
        };
        // Evaluation and prediction progress lines carry no training loss.
        if !o.contains_key("loss") {
            return Line::Other;
        }
        // Progress, not measurements: the step, the plan, and the clock.
        let skip = ["current_steps", "total_steps", "percentage", "total_tokens"];
        Line::Step {
            logged: Logged {
                step,
                t: None,
                metrics: numbers(o, &skip),
            },
            elapsed: o
                .get("elapsed_time")
                .and_then(Value::as_str)
                .and_then(hms_seconds),
            total: o.get("total_steps").and_then(Value::as_u64),
            tokens_so_far: o.get("total_tokens").and_then(Value::as_f64),
        }
    }
}

/// Python's `str(timedelta)`: `H:MM:SS` or `N day(s), H:MM:SS`.
pub fn hms_seconds(s: &str) -> Option<f64> {
    let (days, hms) = match s.split_once(", ") {
        Some((d, rest)) => (d.split_whitespace().next()?.parse::<f64>().ok()?, rest),
        None => (0.0, s),
    };
    let mut parts = hms.split(':');
    let h: f64 = parts.next()?.trim().parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let sec: f64 = parts.next()?.parse().ok()?;
    Some(days * 86400.0 + h * 3600.0 + m * 60.0 + sec)
}

/// torchtune's `DiskLogger`: `Step N | name:value name:value ` per
/// `log_dict`, or `Step N | name:value` per `log`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Torchtune;

impl LineSyntax for Torchtune {
    fn parse(&self, line: &str) -> Line {
        let Some(rest) = line.strip_prefix("Step ") else {
            return Line::Bad("does not start with \"Step N |\"".into());
        };
        let Some((n, fields)) = rest.split_once(" | ") else {
            return Line::Bad("no \" | \" after the step".into());
        };
        let Ok(step) = n.trim().parse::<u64>() else {
            return Line::Bad(format!("step \"{n}\" is not a whole number"));
        };
        let mut metrics = BTreeMap::new();
        for field in fields.split_whitespace() {
            // Names may hold ':' (none of torchtune's do); the value is last.
            let Some((name, value)) = field.rsplit_once(':') else {
                return Line::Bad(format!("\"{field}\" is not name:value"));
            };
            match value.parse::<f64>() {
                Ok(v) => {
                    metrics.insert(name.to_string(), v);
                }
                Err(_) => return Line::Bad(format!("{name}'s value \"{value}\" is not a number")),
            }
        }
        Line::Step {
            logged: Logged {
                step,
                t: None,
                metrics,
            },
            elapsed: None,
            total: None,
            tokens_so_far: None,
        }
    }

    fn started(&self, path: &Path) -> Option<f64> {
        let name = path.file_name()?.to_string_lossy().to_string();
        name.strip_prefix("log_")?
            .strip_suffix(".txt")?
            .parse::<f64>()
            .ok()
    }
}

/// verl's `FileLogger`: `{"step": N, "data": {name: value, ...}}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verl;

impl LineSyntax for Verl {
    fn parse(&self, line: &str) -> Line {
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return Line::Bad(e.to_string()),
        };
        let (Some(step), Some(data)) = (
            v.get("step").and_then(Value::as_u64),
            v.get("data").and_then(Value::as_object),
        ) else {
            return Line::Bad("not a {\"step\": N, \"data\": {...}} record".into());
        };
        Line::Step {
            logged: Logged {
                step,
                t: None,
                metrics: numbers(data, &[]),
            },
            elapsed: None,
            total: None,
            tokens_so_far: None,
        }
    }
}

/// Whether `path` starts with a verl `{"step", "data"}` record.
pub fn is_verl_log(path: &Path) -> bool {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut first = String::new();
    if std::io::BufReader::new(f).read_line(&mut first).is_err() {
        return false;
    }
    matches!(Verl.parse(first.trim()), Line::Step { .. })
}
