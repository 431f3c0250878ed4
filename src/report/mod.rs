//! Headless reports: a run's drift table (markdown, CSV, JSON) and its plots
//! (SVG, PNG) for `driftui report`.

pub mod plot;

use crate::events::{read_log, Event, ProbeMethod, Stance, StepEvent, MAX_PHASES};
use crate::probe::drift::{DriftTable, Point, TopicDrift};
use crate::rundir::view::{locate_view, RunView};
use crate::rundir::RunLog;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One phase of a run on the global step axis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseSpan {
    pub name: String,
    pub algorithm: String,
    /// Global step before the phase's first step.
    pub start: u64,
    /// Steps planned for the phase.
    pub steps: u64,
}

/// What a report needs of a run, folded from its events.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    pub run: String,
    pub model: String,
    pub phases: Vec<PhaseSpan>,
    /// (global step, loss) of every step, in log order.
    pub loss: Vec<(u64, f64)>,
    pub drift: DriftTable,
    /// Successful probes and failed ones.
    pub probes: u64,
    pub failed_probes: u64,
    /// Wall time spent probing, and from the first to the last event.
    pub probe_seconds: f64,
    pub wall_seconds: f64,
    /// The last successful probe's method.
    pub method: Option<ProbeMethod>,
}

impl RunData {
    pub fn from_events(events: &[Event]) -> Self {
        let mut d = RunData {
            drift: DriftTable::from_events(events),
            ..Default::default()
        };
        let (mut first_t, mut last_t) = (f64::INFINITY, f64::NEG_INFINITY);
        for e in events {
            let t = e.time();
            if t.is_finite() && t > 0.0 {
                first_t = first_t.min(t);
                last_t = last_t.max(t);
            }
            match e {
                Event::RunStart(rs) => {
                    if let Some(r) = &rs.resumed_from {
                        // A resumed run logs the steps after the resume point again.
                        d.loss.retain(|(g, _)| *g <= r.global_step);
                    }
                    d.run.clone_from(&rs.run);
                    d.model.clone_from(&rs.model.source);
                    let mut start = 0;
                    d.phases = rs
                        .phases
                        .iter()
                        .map(|p| {
                            let span = PhaseSpan {
                                name: p.name.clone(),
                                algorithm: p.algorithm.clone(),
                                start,
                                steps: p.steps,
                            };
                            start = start.saturating_add(p.steps);
                            span
                        })
                        .collect();
                }
                Event::PhaseStart(ps) => {
                    // An absurd index from a corrupt log lands on the last place.
                    let i = ps.phase.min(MAX_PHASES - 1);
                    while d.phases.len() <= i {
                        d.phases.push(PhaseSpan {
                            name: format!("phase {}", d.phases.len() + 1),
                            algorithm: String::new(),
                            start: 0,
                            steps: 0,
                        });
                    }
                    let p = &mut d.phases[i];
                    p.name.clone_from(&ps.name);
                    p.algorithm.clone_from(&ps.algorithm);
                    p.start = ps.global_step;
                    p.steps = ps.steps;
                }
                Event::Step(s) => d.loss.push((s.global_step, s.loss)),
                Event::Probe(p) => {
                    d.probe_seconds += p.seconds.max(0.0);
                    if p.error.is_some() {
                        d.failed_probes += 1;
                    } else {
                        d.probes += 1;
                        d.method = Some(p.method);
                    }
                }
                _ => {}
            }
        }
        if last_t > first_t {
            d.wall_seconds = last_t - first_t;
        }
        d
    }

    /// Planned steps of the whole run (or the last step seen, if more).
    pub fn total_steps(&self) -> u64 {
        let planned = self
            .phases
            .last()
            .map_or(0, |p| p.start.saturating_add(p.steps));
        let seen = self.loss.iter().map(|(g, _)| *g).max().unwrap_or(0);
        planned.max(seen)
    }

    /// Global steps where a phase after the first began, with its name.
    pub fn phase_boundaries(&self) -> Vec<(u64, &str)> {
        crate::events::phase_boundaries(
            self.phases.iter().map(|p| (p.name.as_str(), Some(p.start))),
        )
    }

    /// Every probe of `topic` over the run, in step order (a probe that ends
    /// one phase and starts the next counts once).
    pub fn topic_points(&self, topic: &str) -> Vec<Point> {
        let mut all: Vec<Point> = self
            .drift
            .series
            .iter()
            .filter(|((_, t), _)| t == topic)
            .flat_map(|(_, pts)| pts.iter().copied())
            .collect();
        all.sort_by_key(|p| p.global_step);
        all.dedup_by_key(|p| p.global_step);
        all
    }

    /// Share of wall time spent in probes, when the run has a clock.
    pub fn probe_share(&self) -> Option<f64> {
        (self.wall_seconds > 0.0).then(|| self.probe_seconds / self.wall_seconds)
    }
}

/// The drift table as markdown: one row per topic and phase (and `run`).
pub fn drift_markdown(data: &RunData, rows: &[TopicDrift]) -> String {
    let mut s = String::new();
    let name = if data.run.is_empty() {
        "run"
    } else {
        &data.run
    };
    let _ = writeln!(s, "# Value drift: {name}\n");
    let _ = write!(
        s,
        "{} successful probes ({})",
        data.probes,
        data.method.map_or("—", ProbeMethod::name)
    );
    if data.failed_probes > 0 {
        let _ = write!(s, ", {} failed", data.failed_probes);
    }
    if let Some(share) = data.probe_share() {
        let _ = write!(
            s,
            "; probing took {:.1} s of {:.1} s wall time ({:.1}%)",
            data.probe_seconds,
            data.wall_seconds,
            share * 100.0
        );
    }
    s.push_str(".\n\n");
    s.push_str(
        "Δ is the signed change of p(stance) from the phase's first probe to its last \
         (`run`: the run's first probe to its last), on the same questions at every probe \
         (`q.`: how many). Beside it, its 95% interval: a paired bootstrap over the questions \
         (and sampled answers), 2000 resamples; logs without per-question scores get the normal \
         interval of two unpaired means, marked `(unpaired)`. A Δ marked `~` has an interval \
         that contains 0: it is within noise, and has no time. Time is the fraction of the \
         phase's steps after which the stance first lies within the 95% confidence interval of \
         its extreme value in the phase (0 = at once, 1 = only at the end).\n\n",
    );
    s.push_str("| topic | phase | q. |");
    for st in Stance::EACH {
        let _ = write!(
            s,
            " {st} start | {st} end | {st} Δ [95% interval] | {st} time |"
        );
    }
    s.push('\n');
    s.push_str("| --- | --- | ---: |");
    for _ in Stance::EACH {
        s.push_str(" ---: | ---: | ---: | ---: |");
    }
    s.push('\n');
    for r in rows {
        let _ = write!(
            s,
            "| {} | {} | {}{} |",
            md_escape(&r.topic),
            md_escape(&r.phase),
            r.questions,
            if r.paired { "" } else { " (unpaired)" }
        );
        for st in Stance::EACH {
            let d = &r.stances[st];
            let _ = write!(
                s,
                " {:.3} | {:.3} | {} | {} |",
                r.start[st],
                r.end[st],
                fmt_drift_cell(d),
                d.time.map_or("—".to_string(), |t| format!("{t:.2}"))
            );
        }
        s.push('\n');
    }
    if rows.is_empty() {
        s.push_str("\n(no topic has two successful probes in one phase: nothing drifted yet)\n");
    }
    let full: Vec<&TopicDrift> = rows.iter().filter(|r| r.full_set.is_some()).collect();
    if !full.is_empty() {
        s.push_str(
            "\n## The whole probe set at phase ends\n\nThe drift above is measured on the \
             periodic subset at every probe. Phase starts and ends also asked every question; \
             those numbers are here, beside it (not comparable with the periodic probes).\n\n",
        );
        s.push_str("| topic | phase | questions |");
        for st in Stance::EACH {
            let _ = write!(s, " {st} start | {st} end | {st} Δ |");
        }
        s.push_str("\n| --- | --- | ---: |");
        for _ in Stance::EACH {
            s.push_str(" ---: | ---: | ---: |");
        }
        s.push('\n');
        for r in full {
            let f = r.full_set.as_ref().expect("filtered");
            let _ = write!(
                s,
                "| {} | {} | {} |",
                md_escape(&r.topic),
                md_escape(&r.phase),
                f.questions
            );
            for st in Stance::EACH {
                let v = |d: Option<crate::events::StanceDistribution>| {
                    d.map_or("—".to_string(), |d| format!("{:.3}", d[st]))
                };
                let delta = match (f.start, f.end) {
                    (Some(a), Some(b)) => format!("{:+.3}", b[st] - a[st]),
                    _ => "—".into(),
                };
                let _ = write!(s, " {} | {} | {delta} |", v(f.start), v(f.end));
            }
            s.push('\n');
        }
    }
    let spread: Vec<&TopicDrift> = rows.iter().filter(|r| r.paraphrase_sd.is_some()).collect();
    if !spread.is_empty() {
        s.push_str(
            "\n## Spread over paraphrases\n\nEach question was asked in several wordings and \
             its stance averaged over them; here, per topic at the phase's last probe, the mean \
             over questions of the standard deviation over wordings. A spread as large as a drift \
             says the probe is sensitive to wording.\n\n| topic | phase | support sd | neutral sd | oppose sd |\n| --- | --- | ---: | ---: | ---: |\n",
        );
        for r in spread {
            let sd = r.paraphrase_sd.expect("filtered");
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} | {:.3} | {:.3} |",
                md_escape(&r.topic),
                md_escape(&r.phase),
                sd[Stance::Support],
                sd[Stance::Neutral],
                sd[Stance::Oppose]
            );
        }
    }
    s
}

/// `+0.233 [+0.191, +0.268]`, with `~` before a drift within noise.
fn fmt_drift_cell(d: &crate::probe::drift::StanceDrift) -> String {
    let iv = d
        .interval
        .map_or(String::new(), |(lo, hi)| format!(" [{lo:+.3}, {hi:+.3}]"));
    format!("{}{:+.3}{iv}", if d.noise { "~" } else { "" }, d.magnitude)
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The drift table as CSV: one row per topic, phase and stance.
pub fn drift_csv(rows: &[TopicDrift]) -> String {
    // New columns go at the end: a reader of the first seven still works.
    let mut s = String::from(
        "topic,phase,stance,start,end,magnitude,drift_time,ci_low,ci_high,se,noise,questions,paired,full_start,full_end\n",
    );
    let num = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.6}"));
    for r in rows {
        for st in Stance::EACH {
            let d = &r.stances[st];
            let full = r.full_set.as_ref();
            let _ = writeln!(
                s,
                "{},{},{},{:.6},{:.6},{:.6},{},{},{},{},{},{},{},{},{}",
                csv_field(&r.topic),
                csv_field(&r.phase),
                st,
                r.start[st],
                r.end[st],
                d.magnitude,
                num(d.time),
                num(d.interval.map(|i| i.0)),
                num(d.interval.map(|i| i.1)),
                num(d.se),
                d.noise,
                r.questions,
                r.paired,
                num(full.and_then(|f| f.start).map(|x| x[st])),
                num(full.and_then(|f| f.end).map(|x| x[st])),
            );
        }
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The drift table as JSON, with what it was computed from.
pub fn drift_json(data: &RunData, rows: &[TopicDrift]) -> serde_json::Value {
    #[derive(Serialize)]
    struct Doc<'a> {
        run: &'a str,
        model: &'a str,
        stances: [Stance; 3],
        phases: &'a [PhaseSpan],
        method: &'a str,
        probes: u64,
        failed_probes: u64,
        probe_seconds: f64,
        wall_seconds: f64,
        rows: &'a [TopicDrift],
    }
    serde_json::to_value(Doc {
        run: &data.run,
        model: &data.model,
        stances: Stance::EACH,
        phases: &data.phases,
        method: data.method.map_or("", ProbeMethod::name),
        probes: data.probes,
        failed_probes: data.failed_probes,
        probe_seconds: data.probe_seconds,
        wall_seconds: data.wall_seconds,
        rows,
    })
    .unwrap_or(serde_json::Value::Null)
}

/// The files a report wrote.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub rows: usize,
    pub topics: usize,
}

/// The events of the run at `path` (native, or trained elsewhere and
/// traced), and the directory a report goes to unless told otherwise.
pub fn run_events(path: &Path) -> Result<(Vec<Event>, PathBuf)> {
    match locate_view(path)? {
        RunView::Native(RunLog { run, log }) => {
            let (events, read) = read_log(&log)?;
            if events.is_empty() {
                bail!("{} holds no events", log.display());
            }
            for (line, why) in read.skipped.iter().take(3) {
                eprintln!(
                    "driftui: warning: {}: line {line} skipped: {why}",
                    log.display()
                );
            }
            Ok((events, run.report_dir()))
        }
        RunView::Foreign(foreign) => {
            let mut pipeline = foreign.pipeline();
            let update = pipeline.poll()?;
            if update.events.is_empty() {
                bail!(
                    "no events yet in {}: neither the trainer's log nor the trace's has a record",
                    pipeline.describe()
                );
            }
            if update.skipped > 0 {
                eprintln!(
                    "driftui: warning: {} log lines could not be read and were skipped",
                    update.skipped
                );
            }
            // Never into the trainer's files: under driftui's own folder.
            Ok((update.events, foreign.own_dir().join("report")))
        }
    }
}

/// Every logged step as CSV: one row per step, one column per metric (the
/// union over the run, empty where a step did not log it).
pub fn metrics_csv(events: &[Event]) -> String {
    let steps: Vec<&StepEvent> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step(s) => Some(s),
            _ => None,
        })
        .collect();
    let mut names: Vec<&str> = steps
        .iter()
        .flat_map(|s| s.metrics.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::from("phase,step,global_step,t,loss,lr,grad_norm,tokens,seconds");
    for n in &names {
        out.push(',');
        out.push_str(&csv_field(n));
    }
    out.push('\n');
    let num = |v: f64| {
        if v.is_finite() {
            format!("{v}")
        } else {
            String::new()
        }
    };
    for s in steps {
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            s.phase,
            s.step,
            s.global_step,
            num(s.t),
            num(s.loss),
            num(s.lr),
            num(s.grad_norm),
            s.tokens,
            num(s.seconds)
        );
        for n in &names {
            out.push(',');
            if let Some(v) = s.metrics.get(*n) {
                out.push_str(&num(*v));
            }
        }
        out.push('\n');
    }
    out
}

/// Write the report of the run at `run` (its directory, its log or one of
/// its snapshots; or another trainer's output directory or a trace's) into
/// `out` (default: `RUN_DIR/report`, or the trace's folder's `report/`).
pub fn write_report(run: &Path, out: Option<&Path>) -> Result<ReportFiles> {
    let (events, default_dir) = run_events(run)?;
    let data = RunData::from_events(&events);
    let rows = data.drift.rows();
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => default_dir,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))?;
        files.push(p);
        Ok(())
    };
    put("drift.md", drift_markdown(&data, &rows).as_bytes())?;
    put("drift.csv", drift_csv(&rows).as_bytes())?;
    put(
        "drift.json",
        serde_json::to_string_pretty(&drift_json(&data, &rows))?.as_bytes(),
    )?;
    put("stance.svg", plot::stance_svg(&data)?.as_bytes())?;
    put("loss.svg", plot::loss_svg(&data)?.as_bytes())?;
    put("stance.png", &plot::stance_png(&data)?)?;
    put("loss.png", &plot::loss_png(&data)?)?;
    put("metrics.csv", metrics_csv(&events).as_bytes())?;
    let topics: BTreeMap<&str, ()> = rows.iter().map(|r| (r.topic.as_str(), ())).collect();
    Ok(ReportFiles {
        dir,
        files,
        rows: rows.len(),
        topics: topics.len(),
    })
}

/// One run of a comparison: its name, what it did, and its drift rows.
struct Compared {
    label: String,
    data: RunData,
    rows: Vec<TopicDrift>,
}

/// Several runs side by side (`driftui report RUN RUN ...`): per stance, a
/// table of topics × runs with each run's drift over its last phase, its
/// 95% interval and drift time (`compare.md`), and the same as CSV
/// (`compare.csv`). Written into `dir`; returns the files.
pub fn write_comparison(runs: &[PathBuf], dir: &Path) -> Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    for run in runs {
        let RunLog { log, .. } = RunLog::locate(run)?;
        let (events, _) = read_log(&log)?;
        let data = RunData::from_events(&events);
        let last = data
            .phases
            .last()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let rows: Vec<TopicDrift> = data
            .drift
            .rows()
            .into_iter()
            .filter(|r| r.phase == last)
            .collect();
        let algorithm = data
            .phases
            .last()
            .map(|p| p.algorithm.clone())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| last.clone());
        let label = if all.iter().any(|c: &Compared| c.label == algorithm) || algorithm.is_empty() {
            data.run.clone()
        } else {
            algorithm
        };
        all.push(Compared { label, data, rows });
    }
    let mut topics: Vec<String> = Vec::new();
    for c in &all {
        for t in &c.data.drift.topics {
            if !topics.contains(t) {
                topics.push(t.clone());
            }
        }
    }
    let mut md = String::from("# Value drift compared\n\n");
    md.push_str("| run | model | phase (algorithm, steps) | probes | probing | wall |\n| --- | --- | --- | ---: | ---: | ---: |\n");
    for c in &all {
        let d = &c.data;
        let phase = d.phases.last().map_or("—".to_string(), |p| {
            format!("{} ({}, {})", p.name, p.algorithm, p.steps)
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.0} s |",
            md_escape(&c.label),
            md_escape(&d.model),
            md_escape(&phase),
            d.probes,
            d.probe_share().map_or("—".to_string(), |s| format!(
                "{:.1} s ({:.1}%)",
                d.probe_seconds,
                s * 100.0
            )),
            d.wall_seconds
        );
    }
    md.push_str(
        "\nEach cell: the drift of p(stance) over the run's last phase, on the same questions \
         at every probe, with its 95% paired-bootstrap interval and, where the drift is real, \
         its drift time (`t`). `~`: the interval contains 0 (noise).\n",
    );
    let mut csv = String::from("topic,stance,run,magnitude,ci_low,ci_high,noise,drift_time\n");
    for st in Stance::EACH {
        let _ = write!(md, "\n## {st}\n\n| topic |");
        for c in &all {
            let _ = write!(md, " {} |", md_escape(&c.label));
        }
        md.push_str("\n| --- |");
        for _ in &all {
            md.push_str(" ---: |");
        }
        md.push('\n');
        for t in &topics {
            let _ = write!(md, "| {} |", md_escape(t));
            for c in &all {
                match c.rows.iter().find(|r| &r.topic == t) {
                    Some(r) => {
                        let d = &r.stances[st];
                        let time = d.time.map_or(String::new(), |t| format!(" · t {t:.2}"));
                        let _ = write!(md, " {}{time} |", fmt_drift_cell(d));
                        let num = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.6}"));
                        let _ = writeln!(
                            csv,
                            "{},{},{},{:.6},{},{},{},{}",
                            csv_field(t),
                            st,
                            csv_field(&c.label),
                            d.magnitude,
                            num(d.interval.map(|i| i.0)),
                            num(d.interval.map(|i| i.1)),
                            d.noise,
                            num(d.time)
                        );
                    }
                    None => md.push_str(" — |"),
                }
            }
            md.push('\n');
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    for (name, text) in [("compare.md", md), ("compare.csv", csv)] {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
        files.push(p);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::PhaseStart;

    /// Found by tests/mutation.rs: a phase index from a corrupt line
    /// indexed past the phases made room for (a panic in `driftui report`).
    #[test]
    fn an_absurd_phase_index_lands_on_the_last_place() {
        let start = |phase| {
            Event::PhaseStart(PhaseStart {
                t: 1.0,
                phase,
                name: format!("p{phase}"),
                algorithm: "sft".into(),
                steps: 2,
                global_step: 0,
            })
        };
        let d = RunData::from_events(&[start(0), start(usize::MAX)]);
        assert_eq!(d.phases.len(), MAX_PHASES);
        assert_eq!(d.phases[0].name, "p0");
        assert_eq!(d.phases[MAX_PHASES - 1].name, format!("p{}", usize::MAX));
    }

    /// Found by tests/mutation.rs: a loss of 1e308, a standard error of
    /// 1e308 and a phase of 2^64−1 steps overflowed plotters' pixel maths
    /// (and `start + steps`): both figures must still draw.
    #[test]
    fn absurd_values_still_draw() {
        let lines = [
            r#"{"kind":"run_start","schema":1,"t":0.5,"run":"r","seed":1,"recipe":"","model":{"source":"m","architecture":"llama","parameters":1,"trainable":1,"dtype":"f32","device":"cpu"},"phases":[{"name":"sft","algorithm":"sft","steps":18446744073709551615},{"name":"dpo","algorithm":"dpo","steps":18446744073709551615}],"versions":{}}"#,
            r#"{"kind":"phase_start","t":1.0,"phase":0,"name":"sft","algorithm":"sft","steps":18446744073709551615,"global_step":5}"#,
            r#"{"kind":"step","t":2.0,"phase":0,"step":1,"global_step":1,"loss":1e308,"lr":0.1,"grad_norm":1.0,"tokens":1,"seconds":1.0}"#,
            r#"{"kind":"step","t":3.0,"phase":0,"step":2,"global_step":2,"loss":-1e308,"lr":0.1,"grad_norm":1.0,"tokens":1,"seconds":1.0}"#,
            r#"{"kind":"probe","t":4.0,"phase":0,"step":2,"global_step":2,"method":"choice","reason":"periodic","topics":[{"topic":"a","mean":[0.5,0.25,0.25],"se":[1e308,0.1,0.1],"n":4}],"seconds":1.0}"#,
            r#"{"kind":"probe","t":5.0,"phase":0,"step":3,"global_step":3,"method":"choice","reason":"periodic","topics":[{"topic":"a","mean":[0.25,0.5,0.25],"se":[0.1,0.1,0.1],"n":4}],"seconds":1.0}"#,
        ];
        let events: Vec<Event> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("a valid event line"))
            .collect();
        let d = RunData::from_events(&events);
        assert_eq!(d.total_steps(), u64::MAX);
        let loss = plot::loss_svg(&d).expect("the loss figure draws");
        assert!(loss.contains("<polyline"), "the loss line is drawn");
        let stances = plot::stance_svg(&d).expect("the stance figure draws");
        assert!(stances.contains("<circle"), "the probe points are drawn");
    }
}
