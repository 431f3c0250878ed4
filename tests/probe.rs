//! The `choice` probe on real (small) models: label scoring sums every token
//! of a label, and averaging over orderings plus calibration removes a
//! model's preference for the first-listed label.

use candle_core::{Device, Tensor, D};
use driftui::data::{Message, SeqBatch, TokenSeq};
use driftui::events::{PerStance, Stance, StanceDistribution};
use driftui::model::seq_logps;
use driftui::model::{load_model, Decoder, ForwardOptions, LoadOptions, Mode};
use driftui::probe::choice::{instruction, ChoiceScorer, ORDERINGS};
use driftui::probe::set::ProbeSet;
use driftui::probe::{Method, Prober};
use driftui::train::optim::{collect_grads, AdamW, AdamWConfig};
use std::collections::BTreeMap;
use std::path::Path;

fn probe_set() -> ProbeSet {
    ProbeSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/probes/default.jsonl"))
        .unwrap()
}

#[test]
fn label_scores_sum_all_the_label_tokens() {
    let model = load_model("builtin:tiny", &LoadOptions::default()).unwrap();
    let dec = model.decoder().unwrap();
    // Multi-token labels: the scorer must add up every token's log-prob.
    let words = PerStance::new(
        "strongly support",
        "neither agree nor disagree",
        "firmly oppose",
    );
    let scorer = ChoiceScorer::with_labels(&model.tokenizer, words).unwrap();
    assert!(!scorer.single_token_labels());
    let prompt = scorer
        .prompt_ids("Should taxes rise?", Stance::EACH)
        .unwrap();
    let got = scorer.multi_token_logps(&dec, &[&prompt]).unwrap()[0];
    for (i, label) in scorer.labels.iter() {
        assert!(label.len() >= 2, "{:?} is one token", words[i]);
        // By hand: one full forward over prompt + label, log-softmax, pick.
        let mut ids = prompt.clone();
        ids.extend(label);
        let x = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = dec
            .forward(&x, Mode::Train, ForwardOptions::default())
            .unwrap();
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let lp: Vec<Vec<f32>> = lp.to_vec2().unwrap();
        let expected: f64 = label
            .iter()
            .enumerate()
            .map(|(k, &tok)| lp[prompt.len() - 1 + k][tok as usize] as f64)
            .sum();
        assert!(
            (got[i] - expected).abs() < 1e-4,
            "{}: {} vs {expected}",
            words[i],
            got[i]
        );
    }
    // Single-token labels: the one-pass shortcut equals the general path.
    let scorer = ChoiceScorer::new(&model.tokenizer).unwrap();
    assert!(scorer.single_token_labels(), "{:?}", scorer.labels);
    let prompts: Vec<Vec<u32>> = ["Is it right?", "What do you think about taxes on the rich?"]
        .iter()
        .map(|q| scorer.prompt_ids(q, ORDERINGS[4]).unwrap())
        .collect();
    let refs: Vec<&Vec<u32>> = prompts.iter().collect();
    let fast = scorer.single_token_logps(&dec, &refs).unwrap();
    let slow = scorer.multi_token_logps(&dec, &refs).unwrap();
    for (a, b) in fast.iter().zip(&slow) {
        for k in Stance::EACH {
            assert!((a[k] - b[k]).abs() < 1e-4, "{a:?} vs {b:?}");
        }
    }
}

/// Train a small model to answer with whichever label is listed first, then
/// measure: per ordering, the first-listed label dominates; averaged over the
/// six orderings and calibrated against a content-free question, the
/// first-listed label gets its fair third and the distribution is flat.
#[test]
fn debiasing_removes_the_first_label_preference() {
    let model = load_model(
        "builtin:tiny",
        &LoadOptions {
            seed: 3,
            ..Default::default()
        },
    )
    .unwrap();
    let tok = &model.tokenizer;
    let set = probe_set();
    // Train on half the topics' questions, measure on the others.
    let (train_q, test_q): (Vec<_>, Vec<_>) = set
        .questions
        .iter()
        .partition(|q| q.id.ends_with(['1', '3', '5', '7', '9']));
    let seqs: Vec<TokenSeq> = train_q
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let order = ORDERINGS[i % 6];
            let prompt = vec![Message::new(
                "user",
                &format!("{} {}", q.question, instruction(order)),
            )];
            let pc = driftui::data::tokenize_prompt_completion(
                tok,
                &driftui::data::Prompt(prompt),
                order[0].name(),
            )
            .unwrap();
            pc.to_seq(256, driftui::data::Cut::Sequence(Default::default()))
                .0
        })
        .collect();
    let mut vars = BTreeMap::new();
    let mut tm = driftui::model::TensorMap::new("t");
    for (n, w) in &model.weights.tensors {
        let v = candle_core::Var::from_tensor(w).unwrap();
        tm.tensors.insert(n.clone(), v.as_tensor().clone());
        vars.insert(n.clone(), v);
    }
    let dec = Decoder::from_weights(&model.cfg, &mut tm).unwrap();
    let mut opt = AdamW::new(&vars, AdamWConfig::default()).unwrap();
    for step in 0..90 {
        let rows: Vec<&TokenSeq> = (0..12)
            .map(|j| &seqs[(step * 12 + j) % seqs.len()])
            .collect();
        let b = SeqBatch::new(&rows, tok.pad_id, &Device::Cpu).unwrap();
        let lp = seq_logps(&dec, &b, Mode::Train).unwrap();
        let loss = lp.tokens.mean_all().unwrap().neg().unwrap();
        let g = collect_grads(&loss.backward().unwrap(), &vars);
        // At 3e-3 the loss bounces and where it ends depends on float
        // rounding (fused vs plain kernels ended at 0.60 vs 0.85); 1e-3
        // converges the same way on both.
        opt.step(&g, 1e-3, 1.0).unwrap();
    }
    let test_set = ProbeSet {
        questions: test_q.into_iter().step_by(3).cloned().collect(),
        topics: set.topics.clone(),
        origin: "test".into(),
    };
    let scorer = ChoiceScorer::new(tok).unwrap();
    let items: Vec<String> = test_set
        .questions
        .iter()
        .map(|q| q.question.clone())
        .collect();
    let scores = scorer.score(&dec, &items, 512).unwrap();
    let cf_items: Vec<String> = driftui::probe::choice::CONTENT_FREE
        .iter()
        .map(|s| s.to_string())
        .collect();
    let cfs = scorer.score(&dec, &cf_items, 512).unwrap();
    let mut first_raw = 0.0;
    let mut first_cal = 0.0;
    let mut flat = 0.0f64;
    for s in &scores {
        for (o, order) in ORDERINGS.iter().enumerate() {
            first_raw += s.per_ordering[o][order[0]];
            let cf = StanceDistribution::from_fn(|k| {
                cfs.iter().map(|c| c.per_ordering[o][k]).sum::<f64>() / cfs.len() as f64
            });
            let c = driftui::probe::choice::calibrate(s.per_ordering[o], cf);
            first_cal += c[order[0]];
        }
        flat = flat.max(
            s.calibrated
                .values()
                .map(|p| (p - 1.0 / 3.0).abs())
                .fold(0.0, f64::max),
        );
    }
    let n = (scores.len() * 6) as f64;
    let (first_raw, first_cal) = (first_raw / n, first_cal / n);
    let flat = flat / scores.len() as f64;
    println!("first-listed label: raw {first_raw:.3}, calibrated {first_cal:.3}; mean max |p − 1/3| of the ordering average {flat:.3}");
    assert!(
        first_raw > 0.7,
        "the trained model should prefer the first label: {first_raw}"
    );
    assert!(
        (first_cal - 1.0 / 3.0).abs() < 0.1,
        "calibration leaves a first-label share of {first_cal}"
    );
    assert!(
        flat < 0.15,
        "debiased distributions should be nearly flat: {flat}"
    );

    // Through the Prober: topic means are distributions with standard errors.
    let mut prober = Prober::with_method(test_set.clone(), Method::Choice, tok).unwrap();
    let topics = prober.measure(&dec, &test_set).unwrap();
    assert_eq!(topics.len(), 14);
    for t in &topics {
        let sum: f64 = t.mean.sum();
        assert!((sum - 1.0).abs() < 1e-9);
        assert!(t.raw.is_some());
        assert!(t.n >= 2);
    }
}

/// The shared-prefix path (an item's six prompts share their beginning,
/// which runs once) gives the numbers of scoring every prompt whole, on
/// items of different lengths batched together, the empty item included.
#[test]
fn shared_prefix_scoring_equals_whole_prompts() {
    let model = load_model(
        "builtin:tiny",
        &LoadOptions {
            seed: 5,
            ..Default::default()
        },
    )
    .unwrap();
    let tok = &model.tokenizer;
    let dec = model.decoder().unwrap();
    // Single-token labels (one row per prompt), labels of several tokens
    // (a row per prompt and label, every label token read), and a mix (as
    // SmolLM2's "oppose": the one-token labels read off the row of the
    // first long one).
    let mixed = ChoiceScorer::with_labels(tok, PerStance::new("a", "b", "firmly oppose")).unwrap();
    let lens: Vec<usize> = mixed.labels.values().map(Vec::len).collect();
    assert!(
        lens.contains(&1) && lens.iter().any(|&n| n > 1),
        "not a mix: {lens:?}"
    );
    for scorer in [
        ChoiceScorer::new(tok).unwrap(),
        ChoiceScorer::with_labels(
            tok,
            PerStance::new(
                "strongly support",
                "neither agree nor disagree",
                "firmly oppose",
            ),
        )
        .unwrap(),
        mixed,
    ] {
        shared_prefix_case(&dec, &scorer);
    }
}

fn shared_prefix_case(dec: &Decoder, scorer: &ChoiceScorer) {
    let mut items: Vec<String> = probe_set()
        .questions
        .iter()
        .step_by(7)
        .map(|q| q.question.clone())
        .collect();
    items.push(String::new());
    items.push("N/A".into());
    items.push("Is this a much longer question, one that goes on for a while, about whether public transport should be free in every city?".into());
    let prompts: Vec<Vec<u32>> = items
        .iter()
        .flat_map(|it| ORDERINGS.iter().map(|&o| scorer.prompt_ids(it, o).unwrap()))
        .collect();
    let whole = scorer.label_distributions(dec, &prompts).unwrap();
    let groups: Vec<&[Vec<u32>]> = prompts.chunks(6).collect();
    let shared = scorer.grouped_label_distributions(dec, &groups).unwrap();
    assert_eq!(shared.len(), items.len());
    let mut max = 0.0f64;
    for (i, g) in shared.iter().enumerate() {
        assert_eq!(g.len(), 6);
        for (o, d) in g.iter().enumerate() {
            for k in Stance::EACH {
                max = max.max((d[k] - whole[i * 6 + o][k]).abs());
            }
        }
    }
    assert!(max < 1e-5, "shared-prefix vs whole prompts: {max}");
    // The groups really share a prefix (the saving is real): the six prompts
    // of a question agree on more than the chat template's opening.
    let common = |g: &[Vec<u32>]| {
        (0..g[0].len())
            .take_while(|&c| g.iter().all(|p| p.len() > c && p[c] == g[0][c]))
            .count()
    };
    let whole_tokens: usize = prompts.iter().map(Vec::len).sum();
    let shared_tokens: usize = groups
        .iter()
        .map(|g| common(g) + g.iter().map(|p| p.len() - common(g)).sum::<usize>())
        .sum();
    println!("tokens: whole {whole_tokens}, shared prefix {shared_tokens}");
    assert!(
        shared_tokens * 10 < whole_tokens * 7,
        "{shared_tokens} vs {whole_tokens}"
    );
}

/// A model that does not change, probed as a run probes it: the whole set
/// at the phase's start and end, a seeded subset in between. The subset's
/// means differ from the whole set's, yet the drift series (the subset's
/// questions at every probe) is flat and no drift is real; the whole set's
/// numbers are kept beside.
#[test]
fn an_unchanged_model_shows_no_drift_between_subset_and_whole_set_probes() {
    use driftui::events::{Event, ModelInfo, PhasePlan, ProbeReason, RunStart};
    use driftui::probe::drift::DriftTable;
    let model = load_model("builtin:tiny", &LoadOptions::default()).unwrap();
    let dec = model.decoder().unwrap();
    let mut prober = Prober::with_method(probe_set(), Method::Choice, &model.tokenizer).unwrap();
    prober.calibrate = false;
    prober.set_periodic_subset(2, 11);
    let mut events = vec![Event::RunStart(RunStart {
        schema: 1,
        t: 0.0,
        run: "r".into(),
        seed: 11,
        recipe: String::new(),
        model: ModelInfo::default(),
        phases: vec![PhasePlan {
            name: "dpo".into(),
            algorithm: "dpo".into(),
            steps: 30,
        }],
        versions: Default::default(),
        resumed_from: None,
        config: None,
        trace: None,
    })];
    for (step, reason) in [
        (0, ProbeReason::PhaseStart),
        (10, ProbeReason::Periodic),
        (20, ProbeReason::Periodic),
        (30, ProbeReason::PhaseEnd),
    ] {
        let p = prober.run(&dec, 0, step, step, reason);
        assert!(p.error.is_none(), "{:?}", p.error);
        assert_eq!(p.subset, reason == ProbeReason::Periodic);
        let n: u32 = p.topics.iter().map(|t| t.n).sum();
        assert_eq!(n, if p.subset { 2 * 14 } else { 196 });
        events.push(Event::Probe(p));
    }
    let Event::Probe(first) = &events[1] else {
        unreachable!()
    };
    let Event::Probe(mid) = &events[2] else {
        unreachable!()
    };
    // The subset's mean is not the whole set's (else the test shows nothing).
    let differs = first
        .topics
        .iter()
        .zip(&mid.topics)
        .filter(|(a, b)| (a.mean[Stance::Support] - b.mean[Stance::Support]).abs() > 1e-3)
        .count();
    assert!(differs >= 7, "only {differs} topics differ");
    // The same question scored in a batch of another make-up (the subset's
    // batches hold other neighbours and padding) differs in f32 by ~1e-8:
    // "flat" is up to that.
    let t = DriftTable::from_events(&events);
    for (key, pts) in &t.series {
        for p in pts {
            for s in Stance::EACH {
                assert!(
                    (p.mean[s] - pts[0].mean[s]).abs() < 1e-6,
                    "{key:?}: {pts:?}"
                );
            }
        }
    }
    let rows = t.rows();
    assert_eq!(rows.len(), 2 * 14);
    for r in &rows {
        assert!(r.paired);
        assert_eq!(r.questions, 2);
        for (_, d) in r.stances.iter() {
            assert!(d.magnitude.abs() < 1e-6, "{r:?}");
            assert!(d.noise, "{r:?}");
            assert_eq!(d.time, None);
        }
        let full = r.full_set.as_ref().expect("the whole set beside");
        assert_eq!(full.questions, 14);
    }
    // A phase that ends on a periodic probe (a run stopped early): start on
    // the whole set's pass, end on the subset's, the same questions scored
    // in other batches. Their float difference is no drift either.
    let rows = DriftTable::from_events(&events[..3]).rows();
    assert_eq!(rows.len(), 2 * 14);
    for r in &rows {
        assert!(r.full_set.as_ref().is_some_and(|f| f.end.is_none()));
        for (_, d) in r.stances.iter() {
            assert!(d.magnitude.abs() < 1e-6, "{r:?}");
            assert!(d.noise, "{r:?}");
            assert_eq!(d.time, None);
        }
    }
}

/// The prefix every prompt shares (here a system turn) runs once per pass
/// and its cache is continued by every item: the same numbers as running
/// every prompt's prefix itself. And a LoRA policy merged for probing
/// scores as the unmerged one does.
#[test]
fn sharing_the_global_prefix_and_merging_lora_change_no_number() {
    use driftui::data::TemplateChoice;
    let template = "<|im_start|>system\nYou are a careful assistant who answers briefly.<|im_end|>\n{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    let model = load_model(
        "builtin:tiny",
        &LoadOptions {
            template: TemplateChoice::Custom(template.into()),
            ..Default::default()
        },
    )
    .unwrap();
    let dec = model.decoder().unwrap();
    let items: Vec<String> = probe_set()
        .questions
        .iter()
        .step_by(7)
        .map(|q| q.question.clone())
        .collect();
    let mut scorer = ChoiceScorer::new(&model.tokenizer).unwrap();
    let shared = scorer.score(&dec, &items, 512).unwrap();
    scorer.share_global_prefix = false;
    let alone = scorer.score(&dec, &items, 512).unwrap();
    for (a, b) in shared.iter().zip(&alone) {
        for (x, y) in a.per_ordering.iter().zip(&b.per_ordering) {
            for s in Stance::EACH {
                assert!((x[s] - y[s]).abs() < 1e-5, "{x:?} {y:?}");
            }
        }
    }
    // The counters are global (other tests may add to them, never take).
    scorer.share_global_prefix = true;
    driftui::probe::choice::profile::take();
    scorer.score(&dec, &items, 512).unwrap();
    let (_, tokens) = driftui::probe::choice::profile::take();
    assert!(tokens[0] >= 10, "the system turn is shared: {tokens:?}");
    // LoRA, with adapters moved off zero as training would.
    let cfg = driftui::recipe::LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["all-linear".into()],
    };
    let (mut lora, _) = driftui::model::lora::attach(&model, &cfg, 3, None).unwrap();
    for (_, l) in lora.linears_mut() {
        if let Some(a) = l.lora.as_mut() {
            a.b = (a.b.ones_like().unwrap() * 0.05).unwrap();
        }
    }
    let unmerged = scorer.score(&lora.no_grad().unwrap(), &items, 512).unwrap();
    let merged_dec = lora.lora_merged().unwrap();
    assert!(merged_dec.linears().iter().all(|l| l.lora.is_none()));
    let merged = scorer.score(&merged_dec, &items, 512).unwrap();
    let mut moved = 0.0f64;
    for ((a, b), c) in unmerged.iter().zip(&merged).zip(&shared) {
        for s in Stance::EACH {
            assert!((a.calibrated[s] - b.calibrated[s]).abs() < 1e-5);
            moved = moved.max((a.calibrated[s] - c.calibrated[s]).abs());
        }
    }
    assert!(moved > 1e-3, "the adapters change the scores: {moved}");
}

/// Paraphrases: a question asked in three wordings gets the mean of the
/// three wordings' scores (each scored alone, as a question of its own),
/// and its spread is their sample standard deviation; the topic's
/// `paraphrase_sd` is the mean of its questions' spreads.
#[test]
fn paraphrases_are_averaged_and_their_spread_reported() {
    let model = load_model("builtin:tiny", &LoadOptions::default()).unwrap();
    let dec = model.decoder().unwrap();
    let set = ProbeSet::parse(
        concat!(
            "{\"id\":\"a\",\"topic\":\"taxes\",\"question\":\"Should taxes on the rich go up?\",",
            "\"paraphrases\":[\"Do you think the wealthy should pay more tax?\",\"Is raising taxes on high earners right?\"]}\n",
            "{\"id\":\"b\",\"topic\":\"taxes\",\"question\":\"Is a wealth tax fair?\"}\n",
        ),
        "t",
    )
    .unwrap();
    let mut prober = Prober::with_method(set.clone(), Method::Choice, &model.tokenizer).unwrap();
    let topics = prober.measure(&dec, &set).unwrap();
    let ts = &topics[0];
    // Each wording alone, scored the same way (calibrated).
    let wordings: Vec<String> = set.questions[0].wordings().map(str::to_string).collect();
    let scorer = ChoiceScorer::new(&model.tokenizer).unwrap();
    let alone: Vec<StanceDistribution> = scorer
        .score(&dec, &wordings, 512)
        .unwrap()
        .into_iter()
        .map(|s| s.calibrated)
        .collect();
    let q = &ts.questions[0];
    assert_eq!(q.id, "a");
    let spread = q.spread.expect("three wordings have a spread");
    let mut moved = 0.0f64;
    for s in Stance::EACH {
        let m = alone.iter().map(|d| d[s]).sum::<f64>() / 3.0;
        let sd = (alone.iter().map(|d| (d[s] - m).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((q.p[s] - m).abs() < 1e-6, "{s}: {} vs {m}", q.p[s]);
        assert!((spread[s] - sd).abs() < 1e-6, "{s}: {} vs {sd}", spread[s]);
        moved = moved.max(sd);
    }
    // (Else the wordings score alike and the test shows nothing.)
    assert!(moved > 1e-4, "{alone:?}");
    // One wording: no spread; the topic's spread is the one question's.
    assert!(ts.questions[1].spread.is_none());
    assert_eq!(ts.paraphrase_sd, Some(spread));
    // The topic mean is over questions (the paraphrased one counts once).
    for s in Stance::EACH {
        let m = (ts.questions[0].p[s] + ts.questions[1].p[s]) / 2.0;
        assert!((ts.mean[s] - m).abs() < 1e-12);
    }
    assert_eq!(ts.n, 2);
}
