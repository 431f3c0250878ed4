//! Probe sets: value-laden questions grouped by topic (JSONL), and
//! judge-check sets: answers with a known stance.

use crate::events::Stance;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

/// One probe question.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeQuestion {
    pub id: String,
    pub topic: String,
    pub question: String,
}

/// Questions and their topics, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSet {
    pub questions: Vec<ProbeQuestion>,
    /// Topics in order of first appearance.
    pub topics: Vec<String>,
    pub origin: String,
}

impl ProbeSet {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the probe set {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
            .with_context(|| format!("in the probe set {}", path.display()))
    }

    /// Parse JSONL; errors name the line.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut questions = Vec::new();
        let mut topics: Vec<String> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(line).with_context(|| format!("line {n}: not valid JSON"))?;
            let field = |k: &str| -> Result<String> {
                match v.get(k) {
                    Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                    Some(Value::String(_)) => bail!("line {n}: \"{k}\" is empty"),
                    Some(_) => bail!("line {n}: \"{k}\" must be a string"),
                    None => bail!("line {n}: missing the field \"{k}\""),
                }
            };
            let topic = field("topic")?;
            let question = field("question")?;
            let id = match v.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(x)) => x.to_string(),
                _ => format!(
                    "{topic}-{:02}",
                    questions
                        .iter()
                        .filter(|q: &&ProbeQuestion| q.topic == topic)
                        .count()
                        + 1
                ),
            };
            if !topics.contains(&topic) {
                topics.push(topic.clone());
            }
            questions.push(ProbeQuestion {
                id,
                topic,
                question,
            });
        }
        if questions.is_empty() {
            bail!("the probe set has no questions");
        }
        Ok(Self {
            questions,
            topics,
            origin: origin.to_string(),
        })
    }

    /// At most `per_topic` questions of each topic (0: all), in file order.
    pub fn subset(&self, per_topic: usize) -> ProbeSet {
        if per_topic == 0 {
            return self.clone();
        }
        let mut counts = std::collections::HashMap::new();
        let questions = self
            .questions
            .iter()
            .filter(|q| {
                let c = counts.entry(q.topic.clone()).or_insert(0usize);
                *c += 1;
                *c <= per_topic
            })
            .cloned()
            .collect();
        ProbeSet {
            questions,
            topics: self.topics.clone(),
            origin: self.origin.clone(),
        }
    }
}

/// An answer whose stance is known, for checking a judge.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeCase {
    pub topic: String,
    pub question: String,
    pub answer: String,
    pub stance: Stance,
}

/// Load a judge-check set (`topic`, `question`, `answer`, `stance`).
pub fn load_judge_cases(path: &Path) -> Result<Vec<JudgeCase>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the judge check set {}", path.display()))?;
    parse_judge_cases(&text).with_context(|| format!("in the judge check set {}", path.display()))
}

/// The judge-check set shipped with driftui (`assets/probes/judge-check.jsonl`).
pub fn builtin_judge_cases() -> Vec<JudgeCase> {
    parse_judge_cases(include_str!("../../assets/probes/judge-check.jsonl"))
        .expect("the shipped judge check set parses")
}

/// Parse judge-check JSONL; errors name the line.
pub fn parse_judge_cases(text: &str) -> Result<Vec<JudgeCase>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("line {n}: not valid JSON"))?;
        let get = |k: &str| -> Result<String> {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .with_context(|| format!("line {n}: missing the string field \"{k}\""))
        };
        let stance_text = get("stance")?;
        let stance = stance_text.parse::<Stance>().map_err(|_| {
            anyhow::anyhow!("line {n}: stance \"{stance_text}\" is not support, neutral or oppose")
        })?;
        out.push(JudgeCase {
            topic: get("topic")?,
            question: get("question")?,
            answer: get("answer")?,
            stance,
        });
    }
    if out.is_empty() {
        bail!("the judge check set is empty");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_bad_lines() {
        let s = ProbeSet::parse(
            "{\"topic\":\"a\",\"question\":\"q1\"}\n{\"topic\":\"b\",\"question\":\"q2\",\"id\":\"x\"}\n{\"topic\":\"a\",\"question\":\"q3\"}\n",
            "t",
        )
        .unwrap();
        assert_eq!(s.topics, vec!["a", "b"]);
        assert_eq!(s.questions[2].id, "a-02");
        assert_eq!(s.subset(1).questions.len(), 2);
        let err = ProbeSet::parse(
            "{\"topic\":\"a\",\"question\":\"q\"}\n{\"question\":\"q\"}",
            "t",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "line 2: missing the field \"topic\"");
        let err = ProbeSet::parse("{\"topic\":\"a\",", "t").unwrap_err();
        assert_eq!(err.to_string(), "line 1: not valid JSON");
    }

    #[test]
    fn shipped_set_has_at_least_12_topics_of_12_questions() {
        let s = ProbeSet::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/probes/default.jsonl"),
        )
        .unwrap();
        assert!(s.topics.len() >= 12);
        for t in &s.topics {
            assert!(
                s.questions.iter().filter(|q| &q.topic == t).count() >= 12,
                "{t}"
            );
        }
        for must in [
            "immigration",
            "abortion",
            "climate-change",
            "gun-control",
            "death-penalty",
            "euthanasia",
            "religion-in-public-life",
            "economic-policy",
        ] {
            assert!(s.topics.iter().any(|t| t == must), "{must}");
        }
    }
}
