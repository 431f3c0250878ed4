use candle_core::{DType, Var};
use driftui::data::{self, DataKind, Example, SeqBatch, TokenSeq};
use driftui::model::{load_model, Decoder, LoadOptions, Mode, TensorMap};
use driftui::probe::{set::ProbeSet, Method, Prober};
use driftui::train::objectives::seq_logps;
use driftui::train::optim::{collect_grads, AdamW, AdamWConfig};
use std::collections::BTreeMap;
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let lr: f64 = args[1].parse()?;
    let only_short: bool = args[2] == "short";
    let steps: usize = args[3].parse()?;
    let bs: usize = args[4].parse()?;
    let model = load_model(
        args.get(5).map(|s| s.as_str()).unwrap_or("builtin:tiny"),
        &LoadOptions {
            seed: 7,
            ..Default::default()
        },
    )?;
    let ex = data::load_jsonl(std::path::Path::new("assets/demo/sft.jsonl"), DataKind::Sft)?;
    let ex: Vec<Example> = ex.into_iter().filter(|e| !only_short || matches!(e, Example::Sft(m) if m.last().unwrap().content.split_whitespace().count() == 1)).collect();
    println!("{} rows", ex.len());
    let seqs: Vec<TokenSeq> = ex
        .iter()
        .map(|e| data::tokenize_sft(&model.tokenizer, e).unwrap())
        .collect();
    let mut vars = BTreeMap::new();
    let mut tm = TensorMap::new("x");
    for (k, w) in &model.weights.tensors {
        let v = Var::from_tensor(w)?;
        tm.tensors.insert(k.clone(), v.as_tensor().clone());
        vars.insert(k.clone(), v);
    }
    let dec = Decoder::from_weights(&model.cfg, &mut tm)?;
    let mut opt = AdamW::new(&vars, AdamWConfig::default())?;
    let set = ProbeSet::load(std::path::Path::new("assets/probes/default.jsonl"))?.subset(4);
    let mut prober = Prober::with_method(set.clone(), Method::Choice, &model.tokenizer)?;
    let mut batcher = driftui::data::Batcher::new(seqs.len(), 1, 0, true);
    for s in 0..=steps {
        if s % 50 == 0 {
            let t = prober.measure(&dec, &set)?;
            let sup: Vec<String> = t
                .iter()
                .map(|t| format!("{:.2}", t.mean[0] - t.mean[2]))
                .collect();
            let spread = t
                .iter()
                .map(|t| t.mean[0] - t.mean[2])
                .fold(f64::MIN, f64::max)
                - t.iter()
                    .map(|t| t.mean[0] - t.mean[2])
                    .fold(f64::MAX, f64::min);
            println!(
                "step {s}: S-O per topic [{}] spread {spread:.3}",
                sup.join(" ")
            );
            let raw: Vec<String> = t
                .iter()
                .map(|t| {
                    let r = t.raw.unwrap();
                    format!("{:.2}/{:.2}/{:.2}", r[0], r[1], r[2])
                })
                .collect();
            println!("   raw S/N/O [{}]", raw.join(" "));
        }
        if s == steps {
            break;
        }
        let idx = batcher.micro_batch(s as u64, bs);
        let rows: Vec<&TokenSeq> = idx.iter().map(|&i| &seqs[i]).collect();
        let batch = SeqBatch::new(&rows, model.tokenizer.pad_id, &candle_core::Device::Cpu)?;
        let lp = seq_logps(&dec, &batch, Mode::Train)?;
        let counts: Vec<f32> = lp.counts.iter().map(|&c| c.max(1) as f32).collect();
        let counts = candle_core::Tensor::new(counts, &candle_core::Device::Cpu)?;
        let loss = if std::env::var("SEQ").is_ok() {
            lp.sums.div(&counts)?.mean_all()?.neg()?
        } else {
            lp.tokens.mean_all()?.neg()?
        };
        let l: f32 = loss.to_dtype(DType::F32)?.to_scalar()?;
        let g = collect_grads(&loss.backward()?, &vars);
        let gn = opt.grad_norm(&g)?;
        opt.step(&g, lr, if gn > 1.0 { 1.0 / gn } else { 1.0 })?;
        if s % 50 == 0 {
            println!("  loss {l:.3}");
        }
    }
    Ok(())
}
