//! Where a `choice` probe pass spends its time on SmolLM2-135M, and what the
//! speed-ups buy: one pass over the shipped probe set (196 questions, 14
//! topics, plus 3 content-free items) in several configurations.
//!
//!     cargo run --release --example bench_probe -- \
//!         --gguf models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf [--lora] [--reps 2]
//!
//! Configurations: `before` (every item's whole prefix run per item, six
//! orderings: the path before issue 11), `shared` (the prefix all prompts
//! share, the chat template's system turn, run once per pass), `shared+3`
//! (and the three cyclic orderings), and with `--lora` the same on a LoRA
//! policy with its adapters unmerged and merged. Prints per configuration
//! the wall seconds, the thread-seconds and tokens per stage, and the
//! largest difference in calibrated p(stance) from `before`.
//!
//! Measured 2026-12-02 (dev profile, `--reps 1`, plain SmolLM2, Intel Xeon,
//! 2 cores shared with other builds at load 5–9, so the walls are loose
//! and the token counts are what to compare):
//!
//! | config | wall | tokens: shared / item prefixes / tails | max Δp vs before |
//! | --- | ---: | ---: | ---: |
//! | before | 400 s | 0 / 8040 / 50148 | 0 |
//! | shared | 495 s | 24 / 3264 / 50148 | 8.2e-6 |
//! | shared+3 | 274 s | 24 / 3264 / 25074 | 7.5e-2 |
//!
//! The tails (each ordering's answer instruction) are 86% of a pass's
//! tokens: sharing the system turn saves 8%, three orderings half. Three
//! cyclic orderings are another estimator, not a faster same one: an
//! item's calibrated p moves by up to 0.075 (a run's probes all use the
//! same orderings, so its drifts stay like with like).
use anyhow::{Context, Result};
use driftui::model::{load_model, lora, LoadOptions};
use driftui::probe::checkpoint::default_probe_set;
use driftui::probe::choice::{profile, ChoiceScorer, ItemScore};
use driftui::recipe::LoraConfig;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let gguf = arg("--gguf").unwrap_or("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let reps: usize = arg("--reps").map_or(Ok(1), |r| r.parse())?;
    let with_lora = args.iter().any(|a| a == "--lora");
    let model = load_model(&format!("gguf:{gguf}"), &LoadOptions::default())
        .with_context(|| format!("loading {gguf}"))?;
    let set = default_probe_set();
    let items: Vec<String> = set.questions.iter().map(|q| q.question.clone()).collect();
    let base = model.decoder()?;
    let t = Instant::now();
    let scorer = ChoiceScorer::new(&model.tokenizer)?;
    for it in &items {
        for o in driftui::probe::choice::ORDERINGS {
            scorer.prompt_ids(it, o)?;
        }
    }
    println!(
        "tokenizing {} items × 6 orderings: {:.3} s",
        items.len(),
        t.elapsed().as_secs_f64()
    );
    let mut decoders = vec![("plain", base.no_grad()?)];
    if with_lora {
        let cfg = LoraConfig {
            rank: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: vec!["all-linear".into()],
        };
        let (mut d, _vars) = lora::attach(&model, &cfg, 42, None)?;
        // Non-zero B, as after training, so merging has something to add.
        for (_, l) in d.linears_mut() {
            if let Some(a) = l.lora.as_mut() {
                a.b = (a.b.ones_like()? * 1e-3)?;
            }
        }
        decoders.push(("lora unmerged", d.no_grad()?));
        decoders.push(("lora merged", d.lora_merged()?));
    }
    let configs: [(&str, bool, usize); 3] = [
        ("before", false, 6),
        ("shared", true, 6),
        ("shared+3", true, 3),
    ];
    let mut reference: Option<Vec<ItemScore>> = None;
    for (dname, dec) in &decoders {
        // Each decoder against its own first configuration; merged LoRA
        // against unmerged.
        if *dname != "lora merged" {
            reference = None;
        }
        for (name, share, orderings) in configs {
            if *dname != "plain" && name != "shared" && name != "shared+3" {
                continue;
            }
            let mut sc = scorer.clone();
            sc.share_global_prefix = share;
            sc.orderings = orderings;
            let mut walls = Vec::new();
            let mut last = None;
            profile::take();
            for _ in 0..reps {
                let t = Instant::now();
                last = Some(sc.score(dec, &items, 512)?);
                walls.push(t.elapsed().as_secs_f64());
            }
            let (secs, toks) = profile::take();
            let scores = last.expect("reps ≥ 1");
            let diff = reference.as_ref().map_or(0.0, |r: &Vec<ItemScore>| {
                r.iter()
                    .zip(&scores)
                    .flat_map(|(a, b)| (a.calibrated - b.calibrated).into_array().map(f64::abs))
                    .fold(0.0, f64::max)
            });
            if reference.is_none() {
                reference = Some(scores);
            }
            walls.sort_by(f64::total_cmp);
            let r = reps as f64;
            println!(
                "RESULT {dname:14} {name:9} wall {:.1} s (min of {reps}) | thread-s: shared prefix {:.1}, item prefixes {:.1}, tails {:.1}, head {:.1} | tokens: shared {}, prefixes {}, tails {} | max |Δp| vs before {:.2e}",
                walls[0],
                secs[0] / r,
                secs[1] / r,
                secs[2] / r,
                secs[3] / r,
                toks[0] / reps as u64,
                toks[1] / reps as u64,
                toks[2] / reps as u64,
                diff
            );
        }
    }
    Ok(())
}
