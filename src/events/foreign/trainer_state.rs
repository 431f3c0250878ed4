//! transformers' `trainer_state.json` (TRL, LLaMA-Factory, any `Trainer`):
//! written into each `checkpoint-N/` when it is saved (last, after the
//! weights), and into the output directory by `Trainer.save_state()`. Each
//! holds the whole `log_history` so far, so the newest readable one is read
//! and the steps not seen before are sent.
//!
//! A `log_history` entry with `loss` is a training step; an evaluation's
//! entry (`eval_loss`, ...) and the final summary (`train_runtime`, ...)
//! logged at the same step are merged into that step's metrics. The log has
//! no clock: a step's time is interpolated between the times the
//! checkpoints around it were written.

use super::{end_event, mtime, plan_event, step_event, Logged};
use crate::events::watch::FollowUpdate;
use crate::events::Event;
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const STATE: &str = "trainer_state.json";

/// A `checkpoint-N` directory's N.
pub fn checkpoint_step(name: &str) -> Option<u64> {
    name.strip_prefix("checkpoint-")?.parse().ok()
}

/// Every `(step, trainer_state.json)` under `dir`: its checkpoints', and
/// its own (step `None`: read it to know).
fn states(dir: &Path) -> Vec<(Option<u64>, PathBuf)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(n) = checkpoint_step(&name) {
                let p = e.path().join(STATE);
                if p.is_file() {
                    out.push((Some(n), p));
                }
            }
        }
    }
    let own = dir.join(STATE);
    if own.is_file() {
        out.push((None, own));
    }
    out
}

/// Whether `dir` holds a trainer state (its own or a checkpoint's).
pub fn has_state(dir: &Path) -> bool {
    !states(dir).is_empty()
}

/// A parsed trainer state.
#[derive(Debug, Clone)]
struct State {
    global_step: u64,
    max_steps: u64,
    history: Vec<serde_json::Map<String, Value>>,
}

fn parse(path: &Path) -> Option<State> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(State {
        global_step: v.get("global_step")?.as_u64()?,
        max_steps: v.get("max_steps").and_then(Value::as_u64).unwrap_or(0),
        history: v
            .get("log_history")?
            .as_array()?
            .iter()
            .filter_map(|e| e.as_object().cloned())
            .collect(),
    })
}

/// (step, time) of each checkpoint, in step order.
type Clock = Vec<(u64, f64)>;

/// Follows a transformers output directory through its trainer states.
pub struct TrainerStateLog {
    dir: PathBuf,
    /// The last step sent.
    sent: Option<u64>,
    total_sent: Option<u64>,
    ended: bool,
    last_tokens: Option<f64>,
    last_t: Option<f64>,
    /// The state file last read, with its length and modification time.
    last_read: Option<(PathBuf, u64, Option<f64>)>,
}

impl TrainerStateLog {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            sent: None,
            total_sent: None,
            ended: false,
            last_tokens: None,
            last_t: None,
            last_read: None,
        }
    }

    /// The newest state that parses whole (a checkpoint being written has a
    /// half-written one, or none yet), and the (step, time) of every checkpoint.
    fn newest(&self) -> (Option<(PathBuf, State)>, Clock) {
        let mut all = states(&self.dir);
        let mut clock: Vec<(u64, f64)> = all
            .iter()
            .filter_map(|(n, p)| Some(((*n)?, mtime(p)?)))
            .collect();
        clock.sort_by_key(|c| c.0);
        // Newest first; the directory's own state (read to know its step) competes too.
        all.sort_by(|a, b| b.0.unwrap_or(u64::MAX).cmp(&a.0.unwrap_or(u64::MAX)));
        let mut best: Option<(PathBuf, State)> = None;
        for (n, p) in all {
            if let Some((_, b)) = &best {
                if n.is_some_and(|n| n <= b.global_step) {
                    break;
                }
            }
            if let Some(s) = parse(&p) {
                if best
                    .as_ref()
                    .is_none_or(|(_, b)| s.global_step > b.global_step)
                {
                    if n.is_none() {
                        if let Some(t) = mtime(&p) {
                            clock.push((s.global_step, t));
                            clock.sort_by_key(|c| c.0);
                        }
                    }
                    best = Some((p, s));
                }
            }
        }
        (best, clock)
    }

    pub fn poll(&mut self) -> Result<FollowUpdate> {
        let mut update = FollowUpdate::default();
        let (best, clock) = self.newest();
        let Some((path, state)) = best else {
            update.missing = !has_state(&self.dir);
            return Ok(update);
        };
        let key = (
            path.clone(),
            std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            mtime(&path),
        );
        if self.last_read.as_ref() == Some(&key) {
            return Ok(update);
        }
        self.last_read = Some(key);
        if self.sent.is_some_and(|s| state.global_step < s) {
            // The directory holds a new run (restarted from scratch or an
            // earlier checkpoint): read it from its start.
            let dir = self.dir.clone();
            *self = Self::new(&dir);
            self.last_read = None;
            let mut again = self.poll()?;
            again.restarted = true;
            return Ok(again);
        }
        // Training steps by step, with what else was logged at that step.
        let mut steps: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
        let mut extra: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
        for entry in &state.history {
            let Some(step) = entry.get("step").and_then(Value::as_u64) else {
                continue;
            };
            let nums: BTreeMap<String, f64> = entry
                .iter()
                .filter(|(k, _)| k.as_str() != "step" && k.as_str() != "total_flos")
                .filter_map(|(k, v)| v.as_f64().map(|f| (k.clone(), f)))
                .collect();
            let into = if entry.contains_key("loss") {
                &mut steps
            } else {
                &mut extra
            };
            into.entry(step).or_default().extend(nums);
        }
        for (step, m) in extra {
            if let Some(s) = steps.get_mut(&step) {
                for (k, v) in m {
                    s.entry(k).or_insert(v);
                }
            }
        }
        let t_of = |step: u64| interpolate(&clock, step);
        if state.max_steps > 0 && self.total_sent != Some(state.max_steps) {
            self.total_sent = Some(state.max_steps);
            update
                .events
                .push(plan_event(t_of(0).unwrap_or(f64::NAN), state.max_steps));
        }
        for (step, metrics) in steps {
            if self.sent.is_some_and(|s| step <= s) {
                continue;
            }
            let t = t_of(step);
            let tokens_so_far = metrics.get("num_tokens").copied();
            let tokens = match (tokens_so_far, self.last_tokens) {
                (Some(n), Some(b)) => (n - b).max(0.0) as u64,
                (Some(n), None) => n.max(0.0) as u64,
                _ => 0,
            };
            if tokens_so_far.is_some() {
                self.last_tokens = tokens_so_far;
            }
            let seconds = match (t, self.last_t, self.sent) {
                (Some(t), Some(lt), Some(ls)) if step > ls => {
                    (t - lt).max(0.0) / (step - ls) as f64
                }
                _ => 0.0,
            };
            update.events.push(Event::Step(step_event(
                Logged { step, t, metrics },
                seconds,
                tokens,
            )));
            self.sent = Some(step);
            self.last_t = t.or(self.last_t);
        }
        if !self.ended && state.max_steps > 0 && state.global_step >= state.max_steps {
            self.ended = true;
            update.events.push(end_event(
                t_of(state.global_step).unwrap_or(f64::NAN),
                state.global_step,
            ));
        }
        Ok(update)
    }
}

impl super::PhaseLog for TrainerStateLog {
    fn poll(&mut self) -> Result<FollowUpdate> {
        TrainerStateLog::poll(self)
    }
    fn path(&self) -> &Path {
        &self.dir
    }
}

/// The time at `step` on the line through the checkpoints' (step, time)
/// points, extended past the ends with the nearest segment's rate.
fn interpolate(points: &[(u64, f64)], step: u64) -> Option<f64> {
    match points {
        [] => None,
        [(_, t)] => Some(*t),
        _ => {
            let i = points
                .windows(2)
                .position(|w| step <= w[1].0)
                .unwrap_or(points.len() - 2);
            let ((s0, t0), (s1, t1)) = (points[i], points[i + 1]);
            if s1 == s0 {
                return Some(t1);
            }
            let rate = (t1 - t0) / (s1 as f64 - s0 as f64);
            Some(t0 + rate * (step as f64 - s0 as f64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_follow_the_checkpoints_and_extend_past_them() {
        let pts = [(2, 100.0), (4, 110.0), (6, 130.0)];
        assert_eq!(interpolate(&pts, 3), Some(105.0));
        assert_eq!(interpolate(&pts, 5), Some(120.0));
        assert_eq!(interpolate(&pts, 1), Some(95.0));
        assert_eq!(interpolate(&pts, 7), Some(140.0));
        assert_eq!(interpolate(&[(2, 7.0)], 9), Some(7.0));
        assert_eq!(interpolate(&[], 9), None);
    }
}
