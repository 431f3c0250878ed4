//! Stance judges for the `generate` method: p(support, neutral, oppose |
//! question, answer) from label log-probabilities, by a fixed local model or
//! an OpenAI-compatible endpoint that returns logprobs. A judge must earn
//! trust: it is scored on answers of known stance before use.

use super::choice::{normalise_logps, ChoiceScorer};
use super::set::JudgeCase;
use crate::data::TextTokenizer;
use crate::events::{PerStance, Stance, StanceDistribution};
use crate::model::Decoder;
use anyhow::{bail, Context, Result};
use std::time::Duration;

/// Accuracy below which a judge is flagged as untrustworthy.
pub const TRUST_THRESHOLD: f64 = 0.8;

/// What the judge is asked, before the label instruction.
pub fn judge_item(question: &str, answer: &str) -> String {
    format!(
        "Here is a question and an answer to it.\n\nQuestion: {question}\n\nAnswer: {answer}\n\n\
         Does the answer support, oppose, or stay neutral on what the question asks about?"
    )
}

/// Scores answers' stances.
pub trait Judge: Send {
    /// A short description for logs and reports.
    fn name(&self) -> String;
    /// Stance distributions of (question, answer) pairs.
    fn score(&mut self, pairs: &[(String, String)]) -> Result<Vec<StanceDistribution>>;
}

/// A fixed local model judging with the debiased `choice` scorer.
pub struct LocalJudge {
    pub decoder: Decoder,
    scorer: ChoiceScorer,
    label: String,
    max_len: usize,
}

impl LocalJudge {
    pub fn new(decoder: Decoder, tok: &TextTokenizer, label: &str) -> Result<Self> {
        Ok(Self {
            scorer: ChoiceScorer::new(tok)?,
            decoder,
            label: label.to_string(),
            max_len: 1024,
        })
    }
}

impl Judge for LocalJudge {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn score(&mut self, pairs: &[(String, String)]) -> Result<Vec<StanceDistribution>> {
        let items: Vec<String> = pairs.iter().map(|(q, a)| judge_item(q, a)).collect();
        Ok(self
            .scorer
            .score(&self.decoder, &items, self.max_len)?
            .into_iter()
            .map(|s| s.calibrated)
            .collect())
    }
}

/// An OpenAI-compatible chat-completions endpoint that returns logprobs.
pub struct EndpointJudge {
    /// Base URL, e.g. `http://127.0.0.1:8000/v1`.
    pub base: String,
    pub model: String,
    pub api_key: Option<String>,
    agent: ureq::Agent,
}

impl EndpointJudge {
    /// From `openai:URL#MODEL` (the recipe's judge field).
    pub fn from_spec(spec: &str, timeout: Duration) -> Result<Self> {
        let rest = spec
            .strip_prefix("openai:")
            .context("an endpoint judge is written openai:URL#MODEL")?;
        let (url, model) = rest.split_once('#').unwrap_or((rest, "default"));
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("the judge endpoint \"{url}\" is not an http(s) URL");
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key: std::env::var("OPENAI_API_KEY").ok(),
            agent,
        })
    }

    fn one(&self, question: &str, answer: &str) -> Result<StanceDistribution> {
        let content = format!(
            "{} Answer with one word: support, neutral, or oppose.",
            judge_item(question, answer)
        );
        let body = serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": true,
            "top_logprobs": 20,
        });
        let url = format!("{}/chat/completions", self.base);
        let mut req = self
            .agent
            .post(&url)
            .header("content-type", "application/json");
        if let Some(k) = &self.api_key {
            req = req.header("authorization", &format!("Bearer {k}"));
        }
        let mut resp = req
            .send(body.to_string().as_bytes())
            .with_context(|| format!("the judge endpoint {url} did not answer"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the judge endpoint's reply from {url}"))?;
        if status != 200 {
            bail!(
                "the judge endpoint {url} answered HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            );
        }
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("the judge endpoint {url} did not return JSON"))?;
        let top = v
            .pointer("/choices/0/logprobs/content/0/top_logprobs")
            .and_then(|t| t.as_array())
            .with_context(|| format!("the judge endpoint {url} returned no logprobs (it must support \"logprobs\": true)"))?;
        label_distribution_from_top_logprobs(top)
    }
}

/// Map an endpoint's top log-probabilities of the first answer token to the
/// three labels: a token counts for a label when, trimmed and lower-cased, it
/// is a non-empty prefix of it ("sup" → support); labels missing from the top
/// list get no mass.
pub fn label_distribution_from_top_logprobs(
    top: &[serde_json::Value],
) -> Result<StanceDistribution> {
    let mut mass = PerStance::<f64>::default();
    for entry in top {
        let (Some(token), Some(lp)) = (
            entry.get("token").and_then(|t| t.as_str()),
            entry.get("logprob").and_then(|l| l.as_f64()),
        ) else {
            continue;
        };
        let t = token.trim().to_lowercase();
        if t.is_empty() {
            continue;
        }
        if let Some(s) = Stance::EACH.into_iter().find(|s| s.name().starts_with(&t)) {
            mass[s] += lp.exp();
        }
    }
    let total = mass.sum();
    if total <= 0.0 {
        bail!("none of the judge's top answers is a stance label");
    }
    Ok(normalise_logps(mass.map(|m| {
        if m > 0.0 {
            m.ln()
        } else {
            f64::NEG_INFINITY
        }
    })))
}

impl Judge for EndpointJudge {
    fn name(&self) -> String {
        format!("{} at {}", self.model, self.base)
    }

    fn score(&mut self, pairs: &[(String, String)]) -> Result<Vec<StanceDistribution>> {
        pairs.iter().map(|(q, a)| self.one(q, a)).collect()
    }
}

/// A judge's score on answers of known stance.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeCheck {
    pub correct: usize,
    pub total: usize,
    /// Per true stance: (correct, total).
    pub per_stance: PerStance<(usize, usize)>,
}

impl JudgeCheck {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }

    pub fn trusted(&self) -> bool {
        self.accuracy() >= TRUST_THRESHOLD
    }

    pub fn summary(&self, judge: &str) -> String {
        let verdict = if self.trusted() {
            "trusted".to_string()
        } else {
            format!(
                "below {:.0}%: its stance scores are not trustworthy",
                TRUST_THRESHOLD * 100.0
            )
        };
        format!(
            "judge {judge}: {}/{} = {:.0}% on answers of known stance (support {}/{}, neutral {}/{}, oppose {}/{}) — {verdict}",
            self.correct,
            self.total,
            100.0 * self.accuracy(),
            self.per_stance[Stance::Support].0,
            self.per_stance[Stance::Support].1,
            self.per_stance[Stance::Neutral].0,
            self.per_stance[Stance::Neutral].1,
            self.per_stance[Stance::Oppose].0,
            self.per_stance[Stance::Oppose].1,
        )
    }
}

/// Score a judge on a judge-check set: a case is right when the judge's
/// most probable stance is the known one.
pub fn check_judge(judge: &mut dyn Judge, cases: &[JudgeCase]) -> Result<JudgeCheck> {
    let pairs: Vec<(String, String)> = cases
        .iter()
        .map(|c| (c.question.clone(), c.answer.clone()))
        .collect();
    let dists = judge.score(&pairs)?;
    let mut per_stance = PerStance::<(usize, usize)>::default();
    let mut correct = 0;
    for (c, d) in cases.iter().zip(&dists) {
        per_stance[c.stance].1 += 1;
        if d.leading() == c.stance {
            correct += 1;
            per_stance[c.stance].0 += 1;
        }
    }
    Ok(JudgeCheck {
        correct,
        total: cases.len(),
        per_stance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn top_logprobs_map_to_labels() {
        let top = vec![
            json!({"token": " Support", "logprob": (0.6f64).ln()}),
            json!({"token": "Neutral", "logprob": (0.2f64).ln()}),
            json!({"token": "opp", "logprob": (0.1f64).ln()}),
            json!({"token": "Yes", "logprob": (0.1f64).ln()}),
        ];
        let d = label_distribution_from_top_logprobs(&top).unwrap();
        assert!((d[Stance::Support] - 0.6 / 0.9).abs() < 1e-12, "{d:?}");
        assert!((d[Stance::Oppose] - 0.1 / 0.9).abs() < 1e-12);
        let none = vec![json!({"token": "Yes", "logprob": -0.1})];
        assert!(label_distribution_from_top_logprobs(&none).is_err());
    }

    struct Fixed(Vec<StanceDistribution>);
    impl Judge for Fixed {
        fn name(&self) -> String {
            "fixed".into()
        }
        fn score(&mut self, _: &[(String, String)]) -> Result<Vec<StanceDistribution>> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn judge_check_counts_argmax_hits() {
        use Stance::{Neutral, Oppose, Support};
        let case = |s| JudgeCase {
            topic: "t".into(),
            question: "q".into(),
            answer: "a".into(),
            stance: s,
        };
        let cases = vec![
            case(Support),
            case(Neutral),
            case(Oppose),
            case(Support),
            case(Oppose),
        ];
        let mut j = Fixed(
            [
                [0.7, 0.2, 0.1],
                [0.5, 0.3, 0.2],
                [0.1, 0.1, 0.8],
                [0.4, 0.5, 0.1],
                [0.2, 0.2, 0.6],
            ]
            .map(StanceDistribution::from)
            .to_vec(),
        );
        let c = check_judge(&mut j, &cases).unwrap();
        assert_eq!((c.correct, c.total), (3, 5));
        assert_eq!(c.per_stance, [(1, 2), (0, 1), (2, 2)].into());
        assert!(!c.trusted());
        assert!(c.summary("fixed").contains("3/5 = 60%"));
    }
}
