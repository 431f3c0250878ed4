//! Probe sets: value-laden questions grouped by topic (JSONL), and
//! judge-check sets: answers with a known stance.
//!
//! A question may carry the study's V-PRISM shape: a `category` (one of the
//! study's 11) and `paraphrases`, other wordings of the same question. A
//! question's stance is the mean over its wordings, as it is the mean over
//! the label orderings; the spread over the wordings is reported beside it
//! (stance probes are known to be sensitive to the prompt's wording).

use crate::events::Stance;
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::Value;
use std::path::Path;

/// One probe question.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProbeQuestion {
    pub id: String,
    pub topic: String,
    pub question: String,
    /// Other wordings of the question (may be empty).
    pub paraphrases: Vec<String>,
    /// The study's category, where the file gives one.
    pub category: Option<String>,
}

impl ProbeQuestion {
    /// The question and its paraphrases: every wording that is asked.
    pub fn wordings(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.question.as_str()).chain(self.paraphrases.iter().map(String::as_str))
    }
}

/// Questions and their topics, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSet {
    pub questions: Vec<ProbeQuestion>,
    /// Topics in order of first appearance.
    pub topics: Vec<String>,
    pub origin: String,
}

/// How the rows of a file name their groups: a probe file either gives every
/// question a `topic` (with or without a `category` for all of them) or
/// gives only categories, which are then the topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grouping {
    TopicOnly,
    TopicAndCategory,
    CategoryOnly,
}

impl Grouping {
    fn describe(self) -> &'static str {
        match self {
            Grouping::TopicOnly => "a \"topic\" and no \"category\"",
            Grouping::TopicAndCategory => "a \"topic\" and a \"category\"",
            Grouping::CategoryOnly => "a \"category\" and no \"topic\"",
        }
    }
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
        // The grouping of the first row, and where it was seen.
        let mut grouping: Option<(Grouping, usize)> = None;
        // topic → (category, line) as first seen.
        let mut category_of: std::collections::HashMap<String, (String, usize)> =
            Default::default();
        let mut ids = std::collections::HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(line).with_context(|| format!("line {n}: not valid JSON"))?;
            let field = |k: &str| -> Result<Option<String>> {
                match v.get(k) {
                    Some(Value::String(s)) if !s.trim().is_empty() => {
                        Ok(Some(s.trim().to_string()))
                    }
                    Some(Value::String(_)) => bail!("line {n}: \"{k}\" is empty"),
                    None | Some(Value::Null) => Ok(None),
                    Some(_) => bail!("line {n}: \"{k}\" must be a string"),
                }
            };
            let (topic, category) = (field("topic")?, field("category")?);
            let this = match (&topic, &category) {
                (Some(_), None) => Grouping::TopicOnly,
                (Some(_), Some(_)) => Grouping::TopicAndCategory,
                (None, Some(_)) => Grouping::CategoryOnly,
                (None, None) => bail!("line {n}: missing the field \"topic\" (or \"category\")"),
            };
            match grouping {
                None => grouping = Some((this, n)),
                Some((g, first)) if g != this => bail!(
                    "line {n}: this question has {}, but line {first} has {}; give every \
                     question a topic (and either every one or none a category), or give only \
                     categories",
                    this.describe(),
                    g.describe()
                ),
                Some(_) => {}
            }
            let topic = topic.or(category.clone()).expect("one of the two is set");
            if let (Grouping::TopicAndCategory, Some(c)) = (this, &category) {
                match category_of.get(&topic) {
                    Some((seen, at)) if seen != c => bail!(
                        "line {n}: topic \"{topic}\" is in category \"{c}\" here but in \
                         \"{seen}\" on line {at}; a topic belongs to one category"
                    ),
                    Some(_) => {}
                    None => {
                        category_of.insert(topic.clone(), (c.clone(), n));
                    }
                }
            }
            let question = field("question")?
                .with_context(|| format!("line {n}: missing the field \"question\""))?;
            let paraphrases = match v.get("paraphrases") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(k, p)| match p {
                        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                        _ => bail!("line {n}: \"paraphrases\"[{k}] must be a non-empty string"),
                    })
                    .collect::<Result<Vec<_>>>()?,
                Some(_) => bail!("line {n}: \"paraphrases\" must be a list of strings"),
            };
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
            // Paired drift follows a question by its id across probes.
            if let Some(first) = ids.insert(id.clone(), n) {
                bail!("line {n}: the id \"{id}\" is also on line {first}; ids must be unique");
            }
            if !topics.contains(&topic) {
                topics.push(topic.clone());
            }
            questions.push(ProbeQuestion {
                id,
                topic,
                question,
                paraphrases,
                category,
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

    /// At most `per_topic` questions of each topic (0: all), drawn at random
    /// per topic with `seed` (the run's), kept in file order. A draw, not the
    /// first questions of the file: a file is often ordered from general to
    /// specific questions, and its head is no fair sample of a topic.
    pub fn subset(&self, per_topic: usize, seed: u64) -> ProbeSet {
        if per_topic == 0 {
            return self.clone();
        }
        let mut keep = vec![false; self.questions.len()];
        for topic in &self.topics {
            let mut idx: Vec<usize> = (0..self.questions.len())
                .filter(|&i| &self.questions[i].topic == topic)
                .collect();
            // One stream per topic, so a topic's draw does not depend on the
            // other topics of the file.
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ fnv1a(topic));
            idx.shuffle(&mut rng);
            for &i in idx.iter().take(per_topic) {
                keep[i] = true;
            }
        }
        ProbeSet {
            questions: self
                .questions
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(q, _)| q.clone())
                .collect(),
            topics: self.topics.clone(),
            origin: self.origin.clone(),
        }
    }

    /// Wordings asked per probe pass (questions and their paraphrases).
    pub fn wordings(&self) -> usize {
        self.questions.iter().map(|q| 1 + q.paraphrases.len()).sum()
    }
}

/// FNV-1a, 64 bits: a hash that is the same on every machine and build.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
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
        assert_eq!(s.subset(1, 0).questions.len(), 2);
        let err = ProbeSet::parse(
            "{\"topic\":\"a\",\"question\":\"q\"}\n{\"question\":\"q\"}",
            "t",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: missing the field \"topic\" (or \"category\")"
        );
        let err = ProbeSet::parse("{\"topic\":\"a\",", "t").unwrap_err();
        assert_eq!(err.to_string(), "line 1: not valid JSON");
    }

    #[test]
    fn categories_and_paraphrases() {
        // Categories alone are the topics; paraphrases are extra wordings.
        let s = ProbeSet::parse(
            concat!(
                "{\"category\":\"immigration\",\"question\":\"q1\",\"paraphrases\":[\"q1b\",\"q1c\"]}\n",
                "{\"category\":\"abortion\",\"question\":\"q2\"}\n",
            ),
            "t",
        )
        .unwrap();
        assert_eq!(s.topics, vec!["immigration", "abortion"]);
        assert_eq!(
            s.questions[0].wordings().collect::<Vec<_>>(),
            ["q1", "q1b", "q1c"]
        );
        assert_eq!(s.questions[0].category.as_deref(), Some("immigration"));
        assert_eq!(s.wordings(), 4);
        // Topics inside categories.
        let s = ProbeSet::parse(
            concat!(
                "{\"topic\":\"borders\",\"category\":\"immigration\",\"question\":\"q1\"}\n",
                "{\"topic\":\"asylum\",\"category\":\"immigration\",\"question\":\"q2\"}\n",
            ),
            "t",
        )
        .unwrap();
        assert_eq!(s.topics, vec!["borders", "asylum"]);
    }

    #[test]
    fn category_and_topic_mixed_inconsistently_is_refused_at_the_row() {
        let cases = [
            (
                "{\"topic\":\"a\",\"question\":\"q\"}\n{\"category\":\"c\",\"question\":\"q2\"}",
                "line 2: this question has a \"category\" and no \"topic\", but line 1 has a \"topic\" and no \"category\"",
            ),
            (
                "{\"topic\":\"a\",\"category\":\"c\",\"question\":\"q\"}\n{\"topic\":\"b\",\"question\":\"q2\"}",
                "line 2: this question has a \"topic\" and no \"category\", but line 1 has a \"topic\" and a \"category\"",
            ),
            (
                "{\"topic\":\"a\",\"category\":\"c\",\"question\":\"q\"}\n{\"topic\":\"a\",\"category\":\"d\",\"question\":\"q2\"}",
                "line 2: topic \"a\" is in category \"d\" here but in \"c\" on line 1",
            ),
            (
                "{\"topic\":\"a\",\"question\":\"q\",\"paraphrases\":[\"x\",\"\"]}",
                "line 1: \"paraphrases\"[1] must be a non-empty string",
            ),
            (
                "{\"topic\":\"a\",\"question\":\"q\",\"id\":\"x\"}\n{\"topic\":\"a\",\"question\":\"r\",\"id\":\"x\"}",
                "line 2: the id \"x\" is also on line 1",
            ),
        ];
        for (text, want) in cases {
            let err = ProbeSet::parse(text, "t").unwrap_err().to_string();
            assert!(err.starts_with(want), "{text}\n{err}");
        }
        // Through a file, the error names it too.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mixed.jsonl");
        std::fs::write(&p, cases[0].0).unwrap();
        let err = format!("{:#}", ProbeSet::load(&p).unwrap_err());
        assert!(
            err.contains("mixed.jsonl") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn subsets_are_drawn_per_topic_with_the_seed() {
        let s = ProbeSet::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/probes/default.jsonl"),
        )
        .unwrap();
        let a = s.subset(4, 42);
        assert_eq!(a.questions.len(), 4 * s.topics.len());
        for t in &s.topics {
            assert_eq!(a.questions.iter().filter(|q| &q.topic == t).count(), 4);
        }
        // The same seed draws the same questions; another seed others.
        assert_eq!(a, s.subset(4, 42));
        assert_ne!(a, s.subset(4, 43));
        // Not the file's head: with 14 questions a topic and 4 drawn, the
        // chance that every one of 14 topics draws exactly its first four is
        // (1/1001)^14.
        let head: Vec<&str> = s
            .questions
            .iter()
            .filter(|q| q.topic == s.topics[0])
            .take(4)
            .map(|q| q.id.as_str())
            .collect();
        let mut drawn_heads = 0;
        for t in &s.topics {
            let firsts: Vec<&str> = s
                .questions
                .iter()
                .filter(|q| &q.topic == t)
                .take(4)
                .map(|q| q.id.as_str())
                .collect();
            let got: Vec<&str> = a
                .questions
                .iter()
                .filter(|q| &q.topic == t)
                .map(|q| q.id.as_str())
                .collect();
            drawn_heads += usize::from(firsts == got);
        }
        assert!(drawn_heads < s.topics.len(), "{head:?}");
        // File order is kept within the subset.
        let pos = |id: &str| s.questions.iter().position(|q| q.id == id).unwrap();
        assert!(a
            .questions
            .windows(2)
            .all(|w| pos(&w[0].id) < pos(&w[1].id)));
        assert_eq!(s.subset(0, 42), s);
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
