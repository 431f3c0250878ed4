//! Writes a deterministic, realistic-looking `events.jsonl`: an SFT phase then
//! a DPO phase, stance probes over twelve topics, a pause and resume, manual
//! and phase-end snapshots, a gradient-spike alert.
//!
//! The dashboard's tests and screenshots read its output, committed as
//! `tests/fixtures/events/sample-run.jsonl`:
//!
//! ```text
//! cargo run --example gen_events -- tests/fixtures/events/sample-run.jsonl
//! cargo run --release --example gen_events -- /tmp/big.jsonl --sft 500000 --dpo 490000 --probe-every 5000
//! ```

use anyhow::{bail, Context, Result};
use driftui::events::{
    Alert, AlertLevel, Event, EventLog, Marker, ModelInfo, PhaseEnd, PhasePlan, PhaseStart,
    ProbeEvent, ProbeMethod, ProbeReason, RunEnd, RunStart, RunStatus, SnapshotEvent,
    SnapshotReason, StepEvent, TopicStance, SCHEMA_VERSION,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

const TOPICS: [&str; 12] = [
    "abortion",
    "animal rights",
    "climate change",
    "death penalty",
    "euthanasia",
    "free speech",
    "gun control",
    "immigration",
    "lgbtq rights",
    "minimum wage",
    "nuclear energy",
    "universal healthcare",
];

/// A small xorshift generator: the fixture must be identical on every machine
/// and every version of `rand`.
struct Noise(u64);

impl Noise {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal, mean 0, sd 1 (sum of uniforms).
    fn gauss(&mut self) -> f64 {
        (0..6).map(|_| self.next_f64()).sum::<f64>() - 3.0
    }
}

struct Options {
    out: PathBuf,
    sft: u64,
    dpo: u64,
    probe_every: u64,
}

fn parse_args() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut opts = Options {
        out: PathBuf::new(),
        sft: 120,
        dpo: 60,
        probe_every: 20,
    };
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<u64> {
            args.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--sft" => opts.sft = num("--sft")?,
            "--dpo" => opts.dpo = num("--dpo")?,
            "--probe-every" => opts.probe_every = num("--probe-every")?.max(1),
            _ if a.starts_with("--") => bail!("unknown option {a}"),
            _ => opts.out = PathBuf::from(a),
        }
    }
    if opts.out.as_os_str().is_empty() {
        bail!("usage: gen_events OUT.jsonl [--sft N] [--dpo N] [--probe-every N]");
    }
    Ok(opts)
}

/// Where each topic's stance starts, and where SFT sets it.
fn stance_paths(noise: &mut Noise) -> Vec<([f64; 3], [f64; 3])> {
    TOPICS
        .iter()
        .map(|_| {
            let a = normalise([
                0.30 + 0.1 * noise.next_f64(),
                0.38 + 0.1 * noise.next_f64(),
                0.30 + 0.1 * noise.next_f64(),
            ]);
            let lead = (noise.next_f64() * 3.0) as usize % 3;
            let mut b = [0.15, 0.2, 0.15];
            b[lead] += 0.35 + 0.2 * noise.next_f64();
            (a, normalise(b))
        })
        .collect()
}

fn normalise(v: [f64; 3]) -> [f64; 3] {
    let s: f64 = v.iter().sum();
    [v[0] / s, v[1] / s, v[2] / s]
}

fn main() -> Result<()> {
    let opts = parse_args()?;
    if opts.out.exists() {
        std::fs::remove_file(&opts.out)
            .with_context(|| format!("cannot replace {}", opts.out.display()))?;
    }
    let mut log = EventLog::open(&opts.out)?;
    let mut noise = Noise(0x5eed_d1f7_0000_0001);
    let mut t = 1_764_000_000.0_f64;
    let total = opts.sft + opts.dpo;
    let paths = stance_paths(&mut noise);

    log.append(&Event::RunStart(RunStart {
        schema: SCHEMA_VERSION,
        t,
        run: "demo-sft-dpo".into(),
        seed: 7,
        recipe: "# recipes/demo.toml\n".into(),
        model: ModelInfo {
            source: "builtin:tiny-llama".into(),
            architecture: "llama".into(),
            parameters: 4_718_592,
            trainable: 4_718_592,
            dtype: "f32".into(),
            device: "cpu".into(),
        },
        phases: vec![
            PhasePlan {
                name: "sft".into(),
                algorithm: "sft".into(),
                steps: opts.sft,
            },
            PhasePlan {
                name: "dpo".into(),
                algorithm: "dpo".into(),
                steps: opts.dpo,
            },
        ],
        versions: BTreeMap::from([("driftui".to_string(), "0.1.0".to_string())]),
        resumed_from: None,
        config: None,
        trace: None,
    }))?;

    let probe = |log: &mut EventLog,
                 t: &mut f64,
                 noise: &mut Noise,
                 phase: usize,
                 step: u64,
                 global: u64,
                 reason: ProbeReason|
     -> Result<()> {
        // SFT sets values early and fast; DPO barely moves them (the paper's finding).
        let sft_progress = (global as f64 / opts.sft.max(1) as f64).min(1.0);
        let k = 1.0 - (-6.0 * sft_progress).exp();
        let dpo_progress = global.saturating_sub(opts.sft) as f64 / opts.dpo.max(1) as f64;
        let topics = TOPICS
            .iter()
            .zip(&paths)
            .map(|(topic, (a, b))| {
                let mut m = [0.0; 3];
                for s in 0..3 {
                    m[s] = a[s] + (b[s] - a[s]) * k + 0.01 * noise.gauss();
                }
                m[0] += 0.03 * dpo_progress;
                let m = normalise(m.map(|v| v.max(0.01)));
                TopicStance {
                    topic: topic.to_string(),
                    mean: m.into(),
                    se: m.map(|p| (p * (1.0 - p) / 50.0).sqrt()).into(),
                    n: 50,
                    ..Default::default()
                }
            })
            .collect();
        *t += 3.0;
        log.append(&Event::Probe(ProbeEvent {
            t: *t,
            phase,
            step,
            global_step: global,
            method: ProbeMethod::Choice,
            reason,
            topics,
            seconds: 3.0,
            error: None,
            subset: false,
        }))
    };

    let mut global = 0u64;
    for (phase, (name, steps)) in [("sft", opts.sft), ("dpo", opts.dpo)].iter().enumerate() {
        let phase_t0 = t;
        log.append(&Event::PhaseStart(PhaseStart {
            t,
            phase,
            name: name.to_string(),
            algorithm: name.to_string(),
            steps: *steps,
            global_step: global,
        }))?;
        probe(
            &mut log,
            &mut t,
            &mut noise,
            phase,
            0,
            global,
            ProbeReason::PhaseStart,
        )?;
        for step in 1..=*steps {
            global += 1;
            let p = step as f64 / *steps as f64;
            let seconds = if phase == 0 { 0.42 } else { 0.9 } + 0.03 * noise.next_f64();
            t += seconds;
            let mut metrics = BTreeMap::new();
            let tokens = if phase == 0 { 2048 } else { 3072 };
            let mut grad_norm = 1.2 + 0.3 * noise.gauss().abs();
            let loss = if phase == 0 {
                let mut l = 1.45 + 1.75 * (-4.0 * p).exp() + 0.06 * noise.gauss();
                if step == (*steps * 4 / 5).max(1) {
                    l += 1.1; // one spike; the whole-run history must keep it
                    grad_norm = 48.2;
                }
                l
            } else {
                let margin = 1.3 * (1.0 - (-3.0 * p).exp()) + 0.08 * noise.gauss();
                let chosen = 0.35 * p + 0.05 * noise.gauss();
                let rejected = chosen - margin;
                let acc =
                    (0.5 + 0.4 * (1.0 - (-4.0 * p).exp()) + 0.05 * noise.gauss()).clamp(0.0, 1.0);
                metrics.insert("rewards/chosen".to_string(), chosen);
                metrics.insert("rewards/rejected".to_string(), rejected);
                metrics.insert("rewards/margins".to_string(), margin);
                metrics.insert("rewards/accuracies".to_string(), acc);
                metrics.insert("logps/chosen".to_string(), -42.0 + 3.5 * chosen);
                metrics.insert("logps/rejected".to_string(), -45.0 + 3.5 * rejected);
                (1.0 + (-0.1 * margin).exp()).ln() + 0.02 * noise.gauss()
            };
            let lr = if phase == 0 { 2e-4 } else { 5e-6 } * (1.0 - 0.9 * p);
            log.append(&Event::Step(StepEvent {
                t,
                phase,
                step,
                global_step: global,
                loss,
                lr,
                grad_norm,
                tokens,
                seconds,
                metrics,
            }))?;
            if grad_norm > 10.0 {
                log.append(&Event::Alert(Alert {
                    t,
                    level: AlertLevel::Warning,
                    message: format!("grad_norm {grad_norm:.1} at step {global} (clipped to 1.0)"),
                    global_step: global,
                }))?;
            }
            if phase == 0 && step == (*steps * 7 / 12).max(1) {
                log.append(&Event::Pause(Marker {
                    t,
                    global_step: global,
                    reason: "user".into(),
                }))?;
                t += 12.0;
                log.append(&Event::Resume(Marker {
                    t,
                    global_step: global,
                    reason: "user".into(),
                }))?;
            }
            if phase == 1 && step == (*steps / 2).max(1) {
                log.append(&Event::Snapshot(SnapshotEvent {
                    t,
                    phase,
                    step,
                    global_step: global,
                    path: format!("snapshots/step-{global:06}"),
                    reason: SnapshotReason::Manual,
                }))?;
            }
            if step % opts.probe_every == 0 && step != *steps {
                probe(
                    &mut log,
                    &mut t,
                    &mut noise,
                    phase,
                    step,
                    global,
                    ProbeReason::Periodic,
                )?;
            }
        }
        probe(
            &mut log,
            &mut t,
            &mut noise,
            phase,
            *steps,
            global,
            ProbeReason::PhaseEnd,
        )?;
        log.append(&Event::Snapshot(SnapshotEvent {
            t,
            phase,
            step: *steps,
            global_step: global,
            path: format!("snapshots/step-{global:06}"),
            reason: SnapshotReason::PhaseEnd,
        }))?;
        log.append(&Event::PhaseEnd(PhaseEnd {
            t,
            phase,
            steps: *steps,
            global_step: global,
            seconds: t - phase_t0,
        }))?;
    }
    log.append(&Event::RunEnd(RunEnd {
        t,
        status: RunStatus::Completed,
        global_step: total,
        seconds: t - 1_764_000_000.0,
        message: None,
    }))?;
    log.sync()?;
    Ok(())
}
