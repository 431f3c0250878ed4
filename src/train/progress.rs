//! Plain progress lines on stderr for `train --headless`: phase, step/total,
//! loss, reward margin, tokens/s and ETA, at most about once a second.

use crate::duration::clock;
use crate::events::{Event, Stance};
use std::time::{Duration, Instant};

pub struct Progress {
    last_print: Option<Instant>,
    phases: Vec<(String, String, u64)>,
    /// Smoothed seconds per step and tokens per second of the current phase.
    step_secs: Option<f64>,
    tok_rate: Option<f64>,
    every: Duration,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

fn ema(old: Option<f64>, x: f64) -> f64 {
    match old {
        Some(o) => 0.8 * o + 0.2 * x,
        None => x,
    }
}

impl Progress {
    pub fn new() -> Self {
        Self {
            last_print: None,
            phases: Vec::new(),
            step_secs: None,
            tok_rate: None,
            every: Duration::from_secs(1),
        }
    }

    /// The line to print for an event, if any (separate from printing for tests).
    pub fn line(&mut self, e: &Event) -> Option<String> {
        match e {
            Event::RunStart(r) => {
                self.phases = r
                    .phases
                    .iter()
                    .map(|p| (p.name.clone(), p.algorithm.clone(), p.steps))
                    .collect();
                let plan: Vec<String> = r
                    .phases
                    .iter()
                    .map(|p| format!("{} ({}, {} steps)", p.name, p.algorithm, p.steps))
                    .collect();
                let resumed = r
                    .resumed_from
                    .as_ref()
                    .map(|p| {
                        let parent = p
                            .parent_run
                            .as_ref()
                            .map(|r| format!(" (of the run {r}; this run is a new directory)"))
                            .unwrap_or_default();
                        format!(
                            ", resumed at step {} from {}{parent}",
                            p.global_step, p.snapshot
                        )
                    })
                    .unwrap_or_default();
                Some(format!(
                    "run {}: {} ({:.1}M parameters, {:.1}M trainable, {} on {}), seed {}{resumed}\nphases: {}",
                    r.run,
                    r.model.source,
                    r.model.parameters as f64 / 1e6,
                    r.model.trainable as f64 / 1e6,
                    r.model.dtype,
                    r.model.device,
                    r.seed,
                    plan.join(" → ")
                ))
            }
            Event::PhaseStart(p) => {
                self.step_secs = None;
                self.tok_rate = None;
                self.last_print = None;
                Some(format!(
                    "── phase {}/{}: {} ({}), {} steps ──",
                    p.phase + 1,
                    self.phases.len().max(p.phase + 1),
                    p.name,
                    p.algorithm,
                    p.steps
                ))
            }
            Event::Step(s) => {
                self.step_secs = Some(ema(self.step_secs, s.seconds));
                if s.seconds > 0.0 {
                    self.tok_rate = Some(ema(self.tok_rate, s.tokens as f64 / s.seconds));
                }
                let (name, total) = self
                    .phases
                    .get(s.phase)
                    .map(|p| (p.0.clone(), p.2))
                    .unwrap_or_else(|| (format!("phase {}", s.phase + 1), s.step));
                let due = self.last_print.is_none_or(|t| t.elapsed() >= self.every);
                if !(due || s.step == total || s.step == 1 || !s.loss.is_finite()) {
                    return None;
                }
                self.last_print = Some(Instant::now());
                let mut line = format!(
                    "[{name} {}/{}] step {:>w$}/{total} ({:>3.0}%)  loss {:.4}",
                    s.phase + 1,
                    self.phases.len().max(s.phase + 1),
                    s.step,
                    100.0 * s.step as f64 / total.max(1) as f64,
                    s.loss,
                    w = total.to_string().len()
                );
                if let Some(m) = s.metrics.get("rewards/margins") {
                    line.push_str(&format!("  margin {m:+.4}"));
                }
                if let Some(a) = s.metrics.get("rewards/accuracies") {
                    line.push_str(&format!("  acc {a:.2}"));
                }
                if let Some(k) = s.metrics.get("kl") {
                    line.push_str(&format!("  kl {k:.4}"));
                }
                line.push_str(&format!("  lr {:.2e}", s.lr));
                if let Some(r) = self.tok_rate {
                    line.push_str(&format!("  {r:.0} tok/s"));
                }
                if let Some(sec) = self.step_secs {
                    line.push_str(&format!(
                        "  ETA {}",
                        clock(sec * total.saturating_sub(s.step) as f64)
                    ));
                }
                Some(line)
            }
            Event::Snapshot(s) => Some(format!("snapshot {} ({})", s.path, s.reason)),
            Event::Probe(p) => {
                if let Some(err) = &p.error {
                    return Some(format!("probe ({}) failed: {err}", p.reason));
                }
                let n = p.topics.len();
                let mean =
                    |s: Stance| p.topics.iter().map(|t| t.mean[s]).sum::<f64>() / n.max(1) as f64;
                Some(format!(
                    "probe ({}, step {}): {n} topics, mean support {:.3} neutral {:.3} oppose {:.3} ({:.1} s)",
                    p.reason,
                    p.global_step,
                    mean(Stance::Support),
                    mean(Stance::Neutral),
                    mean(Stance::Oppose),
                    p.seconds
                ))
            }
            Event::Pause(m) => Some(format!("paused at step {} ({})", m.global_step, m.reason)),
            Event::Resume(m) => Some(format!("resumed at step {}", m.global_step)),
            Event::Alert(a) => Some(format!("{}: {}", a.level, a.message)),
            // A sample of what the policy writes every tenth step: one
            // line, the best of it.
            Event::Rollouts(r) if !r.global_step.is_multiple_of(10) => None,
            Event::Rollouts(r) => r
                .samples
                .iter()
                .filter(|x| x.reward.is_finite())
                .max_by(|a, b| a.reward.total_cmp(&b.reward))
                .map(|x| {
                    let text: String = x.completion.chars().take(100).collect();
                    format!(
                        "rollout at step {} (reward {:.3}): {}",
                        r.global_step,
                        x.reward,
                        text.replace('\n', " ")
                    )
                }),
            Event::PhaseEnd(p) => {
                let name = self
                    .phases
                    .get(p.phase)
                    .map(|x| x.0.clone())
                    .unwrap_or_default();
                Some(format!(
                    "phase {name} done: {} steps in {}",
                    p.steps,
                    clock(p.seconds)
                ))
            }
            Event::RunEnd(r) => Some(format!(
                "run {}: {} steps in {}{}",
                r.status,
                r.global_step,
                clock(r.seconds),
                r.message
                    .as_ref()
                    .map(|m| format!(" — {m}"))
                    .unwrap_or_default()
            )),
        }
    }

    pub fn event(&mut self, e: &Event) {
        if let Some(line) = self.line(e) {
            eprintln!("{line}");
        }
    }
}
