use candle_core::{DType, Var};
use driftui::data::{self, DataKind, SeqBatch, TokenSeq};
use driftui::model::{load_model, Decoder, LoadOptions, Mode, TensorMap};
use driftui::train::objectives::seq_logps;
use driftui::train::optim::{collect_grads, AdamW, AdamWConfig};
use std::collections::BTreeMap;
fn main() -> anyhow::Result<()> {
    let lr: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1e-3);
    let n: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(16);
    let model = load_model(
        "builtin:tiny",
        &LoadOptions {
            seed: 7,
            ..Default::default()
        },
    )?;
    let ex = data::load_jsonl(std::path::Path::new("assets/demo/sft.jsonl"), DataKind::Sft)?;
    let seqs: Vec<TokenSeq> = ex
        .iter()
        .take(n)
        .map(|e| data::tokenize_sft(&model.tokenizer, e).unwrap())
        .collect();
    let refs: Vec<&TokenSeq> = seqs.iter().collect();
    let batch = SeqBatch::new(&refs, model.tokenizer.pad_id, &candle_core::Device::Cpu)?;
    let mut vars = BTreeMap::new();
    let mut tm = TensorMap::new("x");
    for (k, w) in &model.weights.tensors {
        let v = Var::from_tensor(w)?;
        tm.tensors.insert(k.clone(), v.as_tensor().clone());
        vars.insert(k.clone(), v);
    }
    let dec = Decoder::from_weights(&model.cfg, &mut tm)?;
    let mut opt = AdamW::new(&vars, AdamWConfig::default())?;
    for s in 0..60 {
        let lp = seq_logps(&dec, &batch, Mode::Train)?;
        let loss = lp.tokens.mean_all()?.neg()?;
        let l: f32 = loss.to_dtype(DType::F32)?.to_scalar()?;
        let g = collect_grads(&loss.backward()?, &vars);
        let gn = opt.grad_norm(&g)?;
        let scale = if gn > 1.0 { 1.0 / gn } else { 1.0 };
        opt.step(&g, lr, scale)?;
        if s % 10 == 0 || s == 59 {
            println!("{s} loss {l:.4} gn {gn:.3} acc {:.3}", lp.accuracy);
        }
    }
    Ok(())
}
