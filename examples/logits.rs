//! Print the last-position logits of a model source for token ids, as JSON
//! (for cross-checks with other implementations).
//!
//!     cargo run --release --example logits -- SOURCE ID ID ID ...
use driftui::model::{load_model, ForwardOptions, LoadOptions, Mode};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (source, ids) = args
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("SOURCE ID..."))?;
    let ids: Vec<u32> = ids.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let opts = LoadOptions {
        template: driftui::data::TemplateChoice::None,
        ..Default::default()
    };
    let m = load_model(source, &opts)?;
    let input =
        candle_core::Tensor::new(ids.as_slice(), &candle_core::Device::Cpu)?.unsqueeze(0)?;
    let logits = m
        .decoder()?
        .forward(&input, Mode::Fast, ForwardOptions::default())?
        .squeeze(0)?;
    let last: Vec<f32> = logits.get(ids.len() - 1)?.to_vec1()?;
    println!("{}", serde_json::to_string(&last)?);
    Ok(())
}
