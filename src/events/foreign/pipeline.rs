//! A run another trainer wrote, as one event stream: each output directory
//! one phase (a multi-stage pipeline: `sft_out/ dpo_out/`), each phase's
//! steps after the previous phase's planned (else logged) steps, plus the
//! probes and checkpoints of a trace's log (`driftui trace`) when there is
//! one. The dashboard, the report and the drift table read this stream as
//! they read a native run's log.

use super::{find_log, open, PhaseLog};
use crate::events::watch::{FollowUpdate, Follower};
use crate::events::{
    Event, ModelInfo, PhasePlan, PhaseStart, RunEnd, RunStart, RunStatus, TracePlan, SCHEMA_VERSION,
};
use anyhow::Result;
use std::path::{Path, PathBuf};

struct Phase {
    dir: PathBuf,
    name: String,
    algorithm: String,
    log: Option<Box<dyn PhaseLog>>,
    planned: Option<u64>,
    last_step: u64,
    /// The offset the events sent so far were placed at.
    sent_offset: Option<u64>,
    finished: bool,
    model: String,
    skipped: u64,
}

impl Phase {
    fn new(dir: &Path) -> Self {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| dir.display().to_string());
        Self {
            dir: dir.to_path_buf(),
            name,
            algorithm: String::new(),
            log: None,
            planned: None,
            last_step: 0,
            sent_offset: None,
            finished: false,
            model: String::new(),
            skipped: 0,
        }
    }

    /// Steps this phase spans on the run's axis, as far as known.
    fn span(&self) -> u64 {
        self.planned.unwrap_or(0).max(self.last_step)
    }
}

/// Several trainers' logs and a trace's log, read as one run.
pub struct Pipeline {
    dirs: Vec<PathBuf>,
    trace_dir: Option<PathBuf>,
    phases: Vec<Phase>,
    trace: Option<Follower>,
    trace_plan: Option<Box<TracePlan>>,
    trace_model: String,
    started: bool,
    ended: bool,
}

impl Pipeline {
    /// The runs in `dirs` (output directories or log files), one phase
    /// each, and the trace whose log is `trace_dir/events.jsonl`, if any.
    pub fn new(dirs: &[PathBuf], trace_dir: Option<&Path>) -> Self {
        Self {
            dirs: dirs.to_vec(),
            trace_dir: trace_dir.map(Path::to_path_buf),
            phases: dirs.iter().map(|d| Phase::new(d)).collect(),
            trace: trace_dir.map(|d| Follower::events_jsonl(&d.join(crate::events::LOG_FILE))),
            trace_plan: None,
            trace_model: String::new(),
            started: false,
            ended: false,
        }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    pub fn trace_dir(&self) -> Option<&Path> {
        self.trace_dir.as_deref()
    }

    /// What is being read, for the status line: each phase's log and format.
    pub fn describe(&self) -> String {
        self.phases
            .iter()
            .map(|p| match find_log(&p.dir) {
                Some(f) => format!("{} ({})", p.dir.display(), f.format.describe()),
                None => format!("{} (no log yet)", p.dir.display()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Read everything there is now (the report; a first look).
    pub fn read_all(dirs: &[PathBuf], trace_dir: Option<&Path>) -> Result<(Vec<Event>, u64)> {
        let mut p = Pipeline::new(dirs, trace_dir);
        let u = p.poll()?;
        Ok((u.events, u.skipped))
    }

    fn offsets(&self) -> Vec<u64> {
        let mut at = 0;
        self.phases
            .iter()
            .map(|p| {
                let o = at;
                at += p.span();
                o
            })
            .collect()
    }

    fn reset(&mut self) {
        *self = Pipeline::new(&self.dirs.clone(), self.trace_dir.clone().as_deref());
    }

    /// What the logs say since the last poll, as events of the whole run.
    pub fn poll(&mut self) -> Result<FollowUpdate> {
        let mut update = self.poll_once()?;
        if update.restarted {
            self.reset();
            let again = self.poll_once()?;
            update = FollowUpdate {
                restarted: true,
                ..again
            };
        }
        Ok(update)
    }

    fn poll_once(&mut self) -> Result<FollowUpdate> {
        let mut update = FollowUpdate::default();
        // Each phase's own events, in its own steps.
        let mut raw: Vec<Vec<Event>> = Vec::with_capacity(self.phases.len());
        for p in &mut self.phases {
            if p.log.is_none() {
                p.log = find_log(&p.dir).map(|f| open(&f));
            }
            let mut events = Vec::new();
            if let Some(log) = &mut p.log {
                let u = log.poll()?;
                if u.restarted {
                    update.restarted = true;
                    return Ok(update);
                }
                p.skipped = u.skipped;
                events = u.events;
            }
            for e in &events {
                match e {
                    Event::RunStart(rs) => {
                        if let Some(first) = rs.phases.first() {
                            if !first.name.is_empty() {
                                p.name.clone_from(&first.name);
                            }
                            p.algorithm.clone_from(&first.algorithm);
                            if first.steps > 0 {
                                p.planned = Some(first.steps);
                            }
                        }
                        p.model.clone_from(&rs.model.source);
                    }
                    Event::PhaseStart(ps) => {
                        if !ps.algorithm.is_empty() {
                            p.algorithm.clone_from(&ps.algorithm);
                        }
                        if ps.steps > 0 {
                            p.planned = Some(ps.steps);
                        }
                    }
                    Event::Step(s) => p.last_step = p.last_step.max(s.global_step),
                    Event::RunEnd(_) => p.finished = true,
                    _ => {}
                }
            }
            raw.push(events);
        }
        let offsets = self.offsets();
        // A phase whose start moved (the one before it logged past its
        // plan) is sent again from the start, in the right place.
        if self
            .phases
            .iter()
            .zip(&offsets)
            .any(|(p, o)| p.sent_offset.is_some_and(|s| s != *o))
        {
            update.restarted = true;
            return Ok(update);
        }
        let mut trace_events = Vec::new();
        if let Some(t) = &mut self.trace {
            let u = t.poll()?;
            if u.restarted {
                update.restarted = true;
                return Ok(update);
            }
            update.skipped += u.skipped;
            trace_events = u.events;
        }
        for e in &trace_events {
            if let Event::RunStart(rs) = e {
                self.trace_plan.clone_from(&rs.trace);
                self.trace_model.clone_from(&rs.model.source);
            }
        }
        update.skipped += self.phases.iter().map(|p| p.skipped).sum::<u64>();
        let anything = raw.iter().any(|r| !r.is_empty()) || !trace_events.is_empty();
        update.missing = self.phases.iter().all(|p| p.log.is_none()) && self.trace_dir.is_none();
        if !self.started && anything {
            self.started = true;
            update
                .events
                .push(Event::RunStart(self.run_start(&raw, &trace_events)));
        }
        for (i, events) in raw.into_iter().enumerate() {
            let offset = offsets[i];
            let steps_here = events.iter().any(|e| matches!(e, Event::Step(_)));
            let p = &mut self.phases[i];
            if p.sent_offset.is_none() && (steps_here || p.planned.is_some()) {
                p.sent_offset = Some(offset);
                update.events.push(Event::PhaseStart(PhaseStart {
                    t: first_time(&events),
                    phase: i,
                    name: p.name.clone(),
                    algorithm: p.algorithm.clone(),
                    steps: p.planned.unwrap_or(0),
                    global_step: offset,
                }));
            }
            for e in events {
                if let Some(e) = place(e, i, offset, &p.dir) {
                    update.events.push(e);
                }
            }
        }
        for e in trace_events {
            let phase = match &e {
                Event::Probe(p) => Some(p.phase),
                Event::Snapshot(s) => Some(s.phase),
                _ => None,
            };
            let offset = phase.and_then(|i| offsets.get(i).copied()).unwrap_or(0);
            let base = self.trace_dir.clone().unwrap_or_default();
            match e {
                Event::RunStart(_)
                | Event::RunEnd(_)
                | Event::PhaseStart(_)
                | Event::PhaseEnd(_) => {}
                e => {
                    if let Some(e) = place(e, phase.unwrap_or(0), offset, &base) {
                        update.events.push(e);
                    }
                }
            }
        }
        if !self.ended && self.started && self.phases.last().is_some_and(|p| p.finished) {
            self.ended = true;
            let last = offsets.last().copied().unwrap_or(0)
                + self.phases.last().map_or(0, |p| p.last_step);
            update.events.push(Event::RunEnd(RunEnd {
                t: last_time(&update.events),
                status: RunStatus::Completed,
                global_step: last,
                seconds: 0.0,
                message: Some("the trainer reached its last step".into()),
            }));
        }
        Ok(update)
    }

    fn run_start(&self, raw: &[Vec<Event>], trace: &[Event]) -> RunStart {
        let name = self
            .phases
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(" → ");
        let model = if self.trace_model.is_empty() {
            self.phases
                .iter()
                .find(|p| !p.model.is_empty())
                .map_or(String::new(), |p| p.model.clone())
        } else {
            self.trace_model.clone()
        };
        let t = raw
            .iter()
            .flatten()
            .chain(trace.iter())
            .map(Event::time)
            .filter(|t| t.is_finite() && *t > 0.0)
            .fold(f64::INFINITY, f64::min);
        RunStart {
            schema: SCHEMA_VERSION,
            t: if t.is_finite() {
                t
            } else {
                crate::events::now()
            },
            run: name,
            seed: 0,
            recipe: String::new(),
            model: ModelInfo {
                source: model,
                ..Default::default()
            },
            phases: self
                .phases
                .iter()
                .map(|p| PhasePlan {
                    name: p.name.clone(),
                    algorithm: p.algorithm.clone(),
                    steps: p.planned.unwrap_or(0),
                })
                .collect(),
            versions: Default::default(),
            resumed_from: None,
            config: None,
            trace: self.trace_plan.clone(),
        }
    }
}

fn first_time(events: &[Event]) -> f64 {
    events
        .iter()
        .map(Event::time)
        .find(|t| t.is_finite())
        .unwrap_or(f64::NAN)
}

fn last_time(events: &[Event]) -> f64 {
    events
        .iter()
        .rev()
        .map(Event::time)
        .find(|t| t.is_finite())
        .unwrap_or_else(crate::events::now)
}

/// One phase's event on the run's axis: phase `i`, steps after `offset`,
/// snapshot paths made absolute against `base` (the log's directory).
/// The phase's own start, plan and end are the pipeline's to say.
fn place(e: Event, i: usize, offset: u64, base: &Path) -> Option<Event> {
    Some(match e {
        Event::Step(mut s) => {
            s.step = s.global_step;
            s.phase = i;
            s.global_step += offset;
            Event::Step(s)
        }
        Event::Probe(mut p) => {
            p.phase = i;
            p.global_step = offset + p.step;
            Event::Probe(p)
        }
        Event::Snapshot(mut s) => {
            s.phase = i;
            s.global_step = offset + s.step;
            let p = Path::new(&s.path);
            if p.is_relative() {
                s.path = base.join(p).display().to_string();
            }
            Event::Snapshot(s)
        }
        Event::Alert(mut a) => {
            a.global_step += offset;
            Event::Alert(a)
        }
        Event::Pause(mut m) => {
            m.global_step += offset;
            Event::Pause(m)
        }
        Event::Resume(mut m) => {
            m.global_step += offset;
            Event::Resume(m)
        }
        Event::Rollouts(mut r) => {
            r.step = r.global_step;
            r.phase = i;
            r.global_step += offset;
            Event::Rollouts(r)
        }
        Event::RunStart(_) | Event::PhaseStart(_) | Event::PhaseEnd(_) | Event::RunEnd(_) => {
            return None
        }
    })
}

impl crate::events::watch::Poll for Pipeline {
    fn poll(&mut self) -> Result<FollowUpdate> {
        Pipeline::poll(self)
    }

    fn watched(&self) -> Vec<(PathBuf, bool)> {
        let mut w: Vec<(PathBuf, bool)> = self
            .dirs
            .iter()
            .map(|d| {
                if d.is_file() {
                    (d.parent().unwrap_or(Path::new(".")).to_path_buf(), false)
                } else {
                    (d.clone(), true)
                }
            })
            .collect();
        if let Some(t) = &self.trace_dir {
            w.push((t.clone(), false));
        }
        w
    }
}
