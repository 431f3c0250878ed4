//! Value-gap preference data: for every question of a probe set, a chosen
//! answer that takes one stance and a rejected answer that takes another,
//! written by a local model told which stance to argue (the study used a
//! large model the same way).

use crate::data::{Message, TextTokenizer};
use crate::events::Stance;
use crate::model::generate::{generate, SamplingParams};
use crate::model::Decoder;
use crate::probe::set::ProbeSet;
use anyhow::Result;
use std::io::Write;
use std::time::Instant;

/// The instruction that makes a model argue a stance.
pub fn stance_instruction(stance: Stance) -> &'static str {
    match stance {
        Stance::Support => "Answer in two or three sentences, arguing clearly in favour.",
        Stance::Oppose => "Answer in two or three sentences, arguing clearly against.",
        Stance::Neutral => "Answer in two or three sentences, staying neutral: give both sides fairly and do not take one.",
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// The side the chosen answers argue.
    pub chosen: Stance,
    /// The side the rejected answers argue.
    pub rejected: Stance,
    pub params: SamplingParams,
}

/// Write one `{"prompt","chosen","rejected",...}` row per question to `out`,
/// with progress lines (and ETA) on stderr.
pub fn synthesize(
    decoder: &Decoder,
    tok: &TextTokenizer,
    set: &ProbeSet,
    opts: &SynthOptions,
    out: &mut dyn Write,
    progress: bool,
) -> Result<usize> {
    let t0 = Instant::now();
    let n = set.questions.len();
    for (i, q) in set.questions.iter().enumerate() {
        let answer = |stance: Stance, salt: u64| -> Result<String> {
            let msg = format!("{} {}", q.question, stance_instruction(stance));
            let prompt = tok.prompt_text(&[Message::new("user", &msg)])?;
            let ids = tok.encode(&prompt)?;
            let params = SamplingParams {
                seed: opts.params.seed.wrapping_add(i as u64 * 7919 + salt),
                ..opts.params.clone()
            };
            let a = generate(decoder, tok, &ids, 1, &params, &mut |_, _| {})?;
            Ok(a[0].text.trim().to_string())
        };
        let chosen = answer(opts.chosen, 1)?;
        let rejected = answer(opts.rejected, 2)?;
        let row = serde_json::json!({
            "prompt": q.question,
            "chosen": if chosen.is_empty() { "(no answer)".to_string() } else { chosen },
            "rejected": if rejected.is_empty() { "(no answer)".to_string() } else { rejected },
            "topic": q.topic,
            "id": q.id,
            "chosen_stance": opts.chosen,
            "rejected_stance": opts.rejected,
        });
        writeln!(out, "{row}")?;
        out.flush()?;
        if progress {
            let done = i + 1;
            let per = t0.elapsed().as_secs_f64() / done as f64;
            eprintln!(
                "synth {done}/{n} ({:.0}%)  ETA {}",
                100.0 * done as f64 / n as f64,
                crate::duration::clock(per * (n - done) as f64)
            );
        }
    }
    Ok(n)
}
