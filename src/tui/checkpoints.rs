//! The probe screen's state: the run's snapshots (newest first), the one or
//! two picked (A, then B), the question (typed, or taken from the probe
//! set), and the answers the worker streams back, one column per checkpoint.

use crate::events::{SnapshotEvent, StanceDistribution};
use crate::model::generate::SamplingParams;
use crate::probe::checkpoint::RunContext;
use crate::probe::set::ProbeSet;
use crate::probe::worker::{JobCheckpoint, JobEvent, JudgeChoice, ProbeJob, WorkerUpdate};
use crate::rundir::{RunDir, SnapshotEntry};
use std::path::{Path, PathBuf};

/// Answers sampled per checkpoint.
pub const SAMPLES: usize = 3;

/// Sampling for the probe screen: the study's temperature, a nucleus that
/// keeps tiny models from wandering off, and short answers.
pub fn default_params() -> SamplingParams {
    SamplingParams {
        temperature: 0.7,
        top_p: 0.95,
        max_tokens: 128,
        seed: 0,
    }
}

/// One sampled answer as it streams in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnswerView {
    pub text: String,
    /// The judge's stance distribution, once scored.
    pub judged: Option<StanceDistribution>,
}

/// One checkpoint's results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnView {
    pub name: String,
    pub global_step: Option<u64>,
    /// What the worker is doing for it.
    pub status: String,
    pub choice: Option<StanceDistribution>,
    pub answers: Vec<AnswerView>,
    /// Judge name, its check on answers of known stance, and whether it passed.
    pub judge: Option<(String, Option<String>, bool)>,
    pub error: Option<String>,
    pub seconds: Option<f64>,
}

/// What a pick did, for the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The snapshot under the cursor is now column `column` (0: A, 1: B);
    /// with two picked already, the older pick made way for it.
    Picked { column: usize, name: String },
    /// It was picked; now it is not.
    Unpicked { name: String },
    /// It cannot be probed, and why.
    Refused(String),
    /// No snapshot under the cursor.
    Nothing,
}

/// Where the question came from.
#[derive(Debug, Clone, PartialEq)]
pub enum QuestionSource {
    Typed,
    /// Index into the probe set.
    Set(usize),
}

/// The probe screen.
#[derive(Debug, Clone)]
pub struct ProbeScreen {
    pub snapshots: Vec<SnapshotEntry>,
    pub cursor: usize,
    /// Picked snapshots (indices into `snapshots`), in column order A, B.
    pub picked: Vec<usize>,
    pub question: String,
    pub source: QuestionSource,
    /// Keys go to the question while typing.
    pub editing: bool,
    /// The first key typed replaces the probe set's question (Backspace edits it).
    pub replace_on_type: bool,
    pub set: Option<ProbeSet>,
    /// Why the run's own probe set is not the one shown, if it is not.
    pub set_note: Option<String>,
    pub judge: JudgeChoice,
    pub samples: usize,
    pub params: SamplingParams,
    /// The job whose updates are shown, while it runs.
    pub running: Option<u64>,
    pub last_job: u64,
    pub columns: Vec<ColumnView>,
    /// The question the columns answer.
    pub asked: String,
    pub loaded_for: Option<PathBuf>,
    /// The running job failed as a whole (not one checkpoint of it).
    pub job_error: Option<String>,
    /// Lines the answer columns are scrolled down by.
    pub scroll: u16,
}

impl Default for ProbeScreen {
    fn default() -> Self {
        Self {
            snapshots: Vec::new(),
            cursor: 0,
            picked: Vec::new(),
            question: String::new(),
            source: QuestionSource::Typed,
            editing: false,
            replace_on_type: false,
            set: None,
            set_note: None,
            judge: JudgeChoice::StartingModel,
            samples: SAMPLES,
            params: default_params(),
            running: None,
            last_job: 0,
            columns: Vec::new(),
            asked: String::new(),
            loaded_for: None,
            job_error: None,
            scroll: 0,
        }
    }
}

impl ProbeScreen {
    /// (Re)read the run's snapshots, keeping the picks that still exist;
    /// load the probe set the first time.
    pub fn refresh(&mut self, run_dir: Option<&Path>, known: &[SnapshotEvent]) {
        let picked: Vec<String> = self
            .picked
            .iter()
            .filter_map(|&i| self.snapshots.get(i).map(|s| s.name.clone()))
            .collect();
        let at = self.snapshots.get(self.cursor).map(|s| s.name.clone());
        self.snapshots = match run_dir {
            Some(d) => RunDir::at(d).snapshots(known),
            None => Vec::new(),
        };
        // Newest first: the cursor starts on the newest, and ↓ goes back in
        // time to the one to compare it with. Snapshots of unknown step last.
        self.snapshots
            .sort_by(|a, b| match (a.global_step, b.global_step) {
                (Some(x), Some(y)) => y.cmp(&x).then_with(|| a.name.cmp(&b.name)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.name.cmp(&b.name),
            });
        self.picked = picked
            .iter()
            .filter_map(|n| self.snapshots.iter().position(|s| &s.name == n))
            .collect();
        self.cursor = at
            .and_then(|n| self.snapshots.iter().position(|s| s.name == n))
            .unwrap_or(0);
        if self.set.is_none() || self.loaded_for.as_deref() != run_dir {
            let (set, note) = match run_dir.map(RunContext::read) {
                Some(Ok(ctx)) => ctx.probe_set(),
                _ => (crate::probe::checkpoint::default_probe_set(), None),
            };
            self.set = Some(set);
            self.set_note = note;
            self.loaded_for = run_dir.map(Path::to_path_buf);
            if self.question.is_empty() {
                self.pick_question(0);
            }
        }
    }

    pub fn move_cursor(&mut self, by: isize) {
        let n = self.snapshots.len() as isize;
        if n > 0 {
            self.cursor = (self.cursor as isize + by).clamp(0, n - 1) as usize;
        }
    }

    /// Pick the snapshot under the cursor as A, or B when A is taken
    /// (a third pick makes the first one give way); a picked one is unpicked.
    pub fn toggle_pick(&mut self) -> Pick {
        let i = self.cursor;
        let Some(s) = self.snapshots.get(i) else {
            return Pick::Nothing;
        };
        let name = s.name.clone();
        if let Some(pos) = self.picked.iter().position(|&p| p == i) {
            self.picked.remove(pos);
            return Pick::Unpicked { name };
        }
        if let Some(p) = &s.problem {
            return Pick::Refused(format!("{name} cannot be probed: {p}"));
        }
        if self.picked.len() == 2 {
            self.picked.remove(0);
        }
        self.picked.push(i);
        Pick::Picked {
            column: self.picked.len() - 1,
            name,
        }
    }

    /// Names of the picked snapshots, in column order.
    pub fn picked_names(&self) -> Vec<&str> {
        self.picked
            .iter()
            .filter_map(|&i| self.snapshots.get(i).map(|s| s.name.as_str()))
            .collect()
    }

    /// Show question `i` of the probe set (wrapping).
    pub fn pick_question(&mut self, i: isize) {
        let Some(set) = &self.set else { return };
        let n = set.questions.len() as isize;
        if n == 0 {
            return;
        }
        let i = i.rem_euclid(n) as usize;
        self.question = set.questions[i].question.clone();
        self.source = QuestionSource::Set(i);
    }

    /// The next (or previous) question of the set.
    pub fn step_question(&mut self, by: isize) {
        let i = match self.source {
            QuestionSource::Set(i) => i as isize + by,
            QuestionSource::Typed => {
                if by >= 0 {
                    0
                } else {
                    -1
                }
            }
        };
        self.pick_question(i);
    }

    /// The topic of the question shown, when it is from the set.
    pub fn topic(&self) -> Option<&str> {
        match (self.source.clone(), &self.set) {
            (QuestionSource::Set(i), Some(set)) => set.questions.get(i).map(|q| q.topic.as_str()),
            _ => None,
        }
    }

    /// Start typing: a question from the probe set is replaced by what is typed.
    pub fn start_editing(&mut self) {
        self.editing = true;
        self.replace_on_type = matches!(self.source, QuestionSource::Set(_));
    }

    pub fn type_char(&mut self, c: char) {
        if std::mem::take(&mut self.replace_on_type) {
            self.question.clear();
        }
        if self.question.chars().count() < 2000 {
            self.question.push(c);
            self.source = QuestionSource::Typed;
        }
    }

    pub fn backspace(&mut self) {
        self.replace_on_type = false;
        self.question.pop();
        self.source = QuestionSource::Typed;
    }

    pub fn clear_question(&mut self) {
        self.question.clear();
        self.source = QuestionSource::Typed;
    }

    /// A job for the picked snapshots and the question, or why there is none.
    pub fn job(&mut self, run_dir: Option<&Path>) -> Result<ProbeJob, String> {
        let run_dir =
            run_dir.ok_or("no run directory: checkpoint probing needs the run's snapshots")?;
        let question = self.question.trim().to_string();
        if question.is_empty() {
            return Err("type a question first (e), or take one from the probe set (n)".into());
        }
        let mut picked: Vec<usize> = self.picked.clone();
        if picked.is_empty() {
            match self.snapshots.get(self.cursor) {
                Some(s) if s.problem.is_none() => picked.push(self.cursor),
                Some(s) => {
                    return Err(format!(
                        "{} cannot be probed: {}",
                        s.name,
                        s.problem.clone().unwrap_or_default()
                    ))
                }
                None => {
                    return Err("this run has no snapshots yet (s takes one while training)".into())
                }
            }
        }
        self.last_job += 1;
        let id = self.last_job;
        let checkpoints: Vec<JobCheckpoint> = picked
            .iter()
            .filter_map(|&i| self.snapshots.get(i))
            .map(|s| JobCheckpoint {
                name: s.name.clone(),
                path: s.path.clone(),
            })
            .collect();
        self.columns = picked
            .iter()
            .filter_map(|&i| self.snapshots.get(i))
            .map(|s| ColumnView {
                name: s.name.clone(),
                global_step: s.global_step.or(s.step),
                status: "queued".into(),
                answers: vec![AnswerView::default(); self.samples],
                ..Default::default()
            })
            .collect();
        self.running = Some(id);
        self.job_error = None;
        self.scroll = 0;
        self.asked = question.clone();
        Ok(ProbeJob {
            id,
            run_dir: run_dir.to_path_buf(),
            checkpoints,
            question,
            samples: self.samples,
            params: SamplingParams {
                seed: id,
                ..self.params.clone()
            },
            judge: self.judge,
        })
    }

    /// Fold a worker update in; returns a message for the status line, if any.
    pub fn apply(&mut self, u: WorkerUpdate) -> Option<(bool, String)> {
        if u.job != self.last_job {
            return None; // a superseded job
        }
        fn col(s: &mut ProbeScreen, c: usize) -> Option<&mut ColumnView> {
            s.columns.get_mut(c)
        }
        match u.event {
            JobEvent::Status { column, text } => {
                if let Some(c) = col(self, column) {
                    c.status = text;
                }
            }
            JobEvent::Choice { column, dist } => {
                if let Some(c) = col(self, column) {
                    c.choice = Some(dist);
                }
            }
            JobEvent::Text {
                column,
                sample,
                text,
            } => {
                if let Some(c) = col(self, column) {
                    if c.answers.len() <= sample {
                        c.answers.resize(sample + 1, AnswerView::default());
                    }
                    c.answers[sample].text.push_str(&text);
                }
            }
            JobEvent::Judge {
                column,
                name,
                check,
                trusted,
            } => {
                if let Some(c) = col(self, column) {
                    c.judge = Some((name, check, trusted));
                }
            }
            JobEvent::Judged {
                column,
                sample,
                dist,
            } => {
                if let Some(c) = col(self, column) {
                    if let Some(a) = c.answers.get_mut(sample) {
                        a.judged = Some(dist);
                    }
                }
            }
            JobEvent::ColumnDone { column, seconds } => {
                if let Some(c) = col(self, column) {
                    c.status = format!("done in {seconds:.1} s");
                    c.seconds = Some(seconds);
                }
            }
            JobEvent::Failed { column, error } => {
                let name = column
                    .and_then(|c| self.columns.get(c))
                    .map(|c| c.name.clone());
                match column.and_then(|c| self.columns.get_mut(c)) {
                    Some(c) => {
                        c.status = "failed".into();
                        c.error = Some(error.clone());
                    }
                    None => {
                        for c in &mut self.columns {
                            if c.seconds.is_none() && c.error.is_none() {
                                c.status = "failed".into();
                            }
                        }
                        self.job_error = Some(error.clone());
                    }
                }
                return Some((
                    true,
                    match name {
                        Some(n) => format!("probing {n} failed: {error}"),
                        None => format!("checkpoint probe failed: {error}"),
                    },
                ));
            }
            JobEvent::Finished { cancelled } => {
                self.running = None;
                if self.job_error.is_some() {
                    return None; // the failure already said it
                }
                for c in &mut self.columns {
                    if c.seconds.is_none() && c.error.is_none() {
                        c.status = if cancelled { "cancelled" } else { "stopped" }.into();
                    }
                }
                let failed = self.columns.iter().filter(|c| c.error.is_some()).count();
                return Some(if cancelled {
                    (false, "checkpoint probe cancelled".to_string())
                } else if failed > 0 {
                    let first = self
                        .columns
                        .iter()
                        .find_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.name)))
                        .unwrap_or_default();
                    (
                        true,
                        format!(
                            "checkpoint probe: {failed} of {} failed — {first}",
                            self.columns.len()
                        ),
                    )
                } else {
                    let n = self.columns.len();
                    let noun = if n == 1 { "checkpoint" } else { "checkpoints" };
                    (false, format!("checkpoint probe done ({n} {noun})"))
                });
            }
        }
        None
    }
}
