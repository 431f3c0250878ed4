//! Datasets in the JSONL formats TRL users already have, tokenization with the
//! model's chat template, truncation, and batching.
//!
//! - SFT: `{"prompt","completion"}`, `{"messages":[{"role","content"}...]}`,
//!   Alpaca `{"instruction","input","output"}`, or `{"text"}`;
//! - preference: `{"prompt","chosen","rejected"}`;
//! - KTO: `{"prompt","completion","label"}`.
//!
//! Prompts and completions may be strings or lists of messages (TRL's
//! "conversational" form).

pub mod batch;
pub mod chat;
pub mod tokenizer;

pub use batch::{Batcher, PairBatch, SeqBatch};
pub use chat::Message;
pub use tokenizer::{TemplateChoice, TextTokenizer};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// A prompt: either plain text (wrapped as one user turn) or a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt(pub Vec<Message>);

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    /// A conversation whose assistant turns are trained on.
    Sft(Vec<Message>),
    /// Plain text, every token trained on.
    Text(String),
    Preference(PreferencePair),
    Kto(KtoExample),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreferencePair {
    pub prompt: Prompt,
    pub chosen: String,
    pub rejected: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KtoExample {
    pub prompt: Prompt,
    pub completion: String,
    /// True when the completion is desirable.
    pub label: bool,
}

/// What a phase's algorithm takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Sft,
    Preference,
    Kto,
}

impl DataKind {
    fn describe(self) -> &'static str {
        match self {
            DataKind::Sft => "SFT rows ({prompt, completion}, {messages}, {instruction, input, output} or {text})",
            DataKind::Preference => "preference rows ({prompt, chosen, rejected})",
            DataKind::Kto => "KTO rows ({prompt, completion, label}), or preference rows (each pair becomes one desirable and one undesirable row)",
        }
    }
}

/// Load a JSONL dataset; every bad row is an error naming the file and line.
pub fn load_jsonl(path: &Path, kind: DataKind) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the dataset {}", path.display()))?;
    parse_jsonl(&text, kind).with_context(|| format!("in the dataset {}", path.display()))
}

/// Parse JSONL text (see [`load_jsonl`]); errors name the line.
pub fn parse_jsonl(text: &str, kind: DataKind) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("line {line_no}: not valid JSON"))?;
        let Value::Object(row) = value else {
            bail!(
                "line {line_no}: expected a JSON object, found {}",
                type_name(&value)
            );
        };
        let rows = parse_row(&row, kind).with_context(|| format!("line {line_no}"))?;
        out.extend(rows);
    }
    if out.is_empty() {
        bail!("the dataset has no rows");
    }
    Ok(out)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_row(row: &Map<String, Value>, kind: DataKind) -> Result<Vec<Example>> {
    let has = |k: &str| row.contains_key(k);
    let found = if has("chosen") || has("rejected") {
        let prompt = prompt_field(row)?;
        let chosen = completion_field(row, "chosen")?;
        let rejected = completion_field(row, "rejected")?;
        let pair = PreferencePair {
            prompt,
            chosen,
            rejected,
        };
        match kind {
            DataKind::Preference => return Ok(vec![Example::Preference(pair)]),
            // Unpaired from paired: TRL's `unpair_preference_dataset`.
            DataKind::Kto => {
                return Ok(vec![
                    Example::Kto(KtoExample {
                        prompt: pair.prompt.clone(),
                        completion: pair.chosen,
                        label: true,
                    }),
                    Example::Kto(KtoExample {
                        prompt: pair.prompt,
                        completion: pair.rejected,
                        label: false,
                    }),
                ])
            }
            DataKind::Sft => "a preference row ({prompt, chosen, rejected})",
        }
    } else if has("label") {
        let ex = KtoExample {
            prompt: prompt_field(row)?,
            completion: completion_field(row, "completion")?,
            label: match row.get("label") {
                Some(Value::Bool(b)) => *b,
                Some(other) => bail!(
                    "\"label\" must be true or false, found {}",
                    type_name(other)
                ),
                None => unreachable!(),
            },
        };
        if kind == DataKind::Kto {
            return Ok(vec![Example::Kto(ex)]);
        }
        "a KTO row ({prompt, completion, label})"
    } else if has("messages") {
        let messages = messages_value(row.get("messages").expect("checked"), "messages")?;
        if !messages.iter().any(|m| m.role == "assistant") {
            bail!("\"messages\" has no assistant turn to train on");
        }
        if kind == DataKind::Sft {
            return Ok(vec![Example::Sft(messages)]);
        }
        "an SFT row ({messages})"
    } else if has("instruction") || has("output") {
        let instruction = string_field(row, "instruction")?;
        let output = string_field(row, "output")?;
        let input = match row.get("input") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => bail!("\"input\" must be a string, found {}", type_name(other)),
        };
        let user = if input.trim().is_empty() {
            instruction
        } else {
            format!("{instruction}\n\n{input}")
        };
        if kind == DataKind::Sft {
            return Ok(vec![Example::Sft(vec![
                Message::new("user", &user),
                Message::new("assistant", &output),
            ])]);
        }
        "an Alpaca row ({instruction, input, output})"
    } else if has("completion") {
        let Prompt(mut messages) = prompt_field(row)?;
        messages.push(Message::new(
            "assistant",
            &completion_field(row, "completion")?,
        ));
        if kind == DataKind::Sft {
            return Ok(vec![Example::Sft(messages)]);
        }
        "an SFT row ({prompt, completion})"
    } else if has("text") {
        let text = string_field(row, "text")?;
        if kind == DataKind::Sft {
            return Ok(vec![Example::Text(text)]);
        }
        "a text row ({text})"
    } else {
        let keys: Vec<&str> = row.keys().map(String::as_str).collect();
        bail!(
            "cannot tell the row's format from its fields {keys:?}; expected {}",
            kind.describe()
        );
    };
    bail!("{found} in a dataset that needs {}", kind.describe())
}

fn string_field(row: &Map<String, Value>, key: &str) -> Result<String> {
    match row.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => bail!("\"{key}\" is empty"),
        Some(other) => bail!("\"{key}\" must be a string, found {}", type_name(other)),
        None => bail!("missing the field \"{key}\""),
    }
}

fn prompt_field(row: &Map<String, Value>) -> Result<Prompt> {
    match row.get("prompt") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Prompt(vec![Message::new("user", s)])),
        Some(Value::String(_)) => bail!("\"prompt\" is empty"),
        Some(v @ Value::Array(_)) => Ok(Prompt(messages_value(v, "prompt")?)),
        Some(other) => bail!(
            "\"prompt\" must be a string or a list of messages, found {}",
            type_name(other)
        ),
        None => bail!("missing the field \"prompt\""),
    }
}

/// A completion: a string, or a conversational list whose content is joined.
fn completion_field(row: &Map<String, Value>, key: &str) -> Result<String> {
    match row.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => bail!("\"{key}\" is empty"),
        Some(v @ Value::Array(_)) => {
            let msgs = messages_value(v, key)?;
            match msgs.as_slice() {
                [m] if m.role == "assistant" => Ok(m.content.clone()),
                _ => bail!("\"{key}\" as a list must hold exactly one assistant message"),
            }
        }
        Some(other) => bail!("\"{key}\" must be a string, found {}", type_name(other)),
        None => bail!("missing the field \"{key}\""),
    }
}

fn messages_value(v: &Value, key: &str) -> Result<Vec<Message>> {
    let Value::Array(items) = v else {
        bail!("\"{key}\" must be a list of messages");
    };
    if items.is_empty() {
        bail!("\"{key}\" is an empty list");
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m.get("role").and_then(Value::as_str);
            let content = m.get("content").and_then(Value::as_str);
            match (role, content) {
                (Some(r), Some(c)) if ["system", "user", "assistant"].contains(&r) => {
                    Ok(Message::new(r, c))
                }
                (Some(r), Some(_)) => {
                    bail!("\"{key}\"[{i}]: unknown role \"{r}\" (system, user, assistant)")
                }
                _ => bail!("\"{key}\"[{i}] needs string fields \"role\" and \"content\""),
            }
        })
        .collect()
}

/// A tokenized sequence with, for every token, whether predicting it counts
/// toward the loss.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSeq {
    pub ids: Vec<u32>,
    pub trained: Vec<bool>,
}

impl TokenSeq {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of tokens whose prediction is trained on (the first token is
    /// never predicted).
    pub fn trained_targets(&self) -> usize {
        self.trained.iter().skip(1).filter(|&&t| t).count()
    }
}

/// A prompt and its completion, tokenized apart (as TRL does for preference
/// data), so a pair shares its prompt tokens exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptCompletion {
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
}

/// How a sequence longer than `max_len` is cut (TRL's `truncation_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncationMode {
    /// Keep the first `max_len` tokens: the end of the completion goes
    /// first (TRL 1.16's default).
    #[default]
    KeepStart,
    /// Keep the last `max_len` tokens: the start of the prompt goes first.
    KeepEnd,
}

/// Where a too-long (prompt, completion) loses tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The joined sequence, as [`TruncationMode`] says (SFT, DPO, KTO).
    Sequence(TruncationMode),
    /// The completion only, the prompt kept whole (TRL's CPO and ORPO).
    Completion,
}

impl PromptCompletion {
    /// Joined and truncated to `max_len`. Returns the sequence and whether
    /// anything was cut.
    pub fn to_seq(&self, max_len: usize, cut: Cut) -> (TokenSeq, bool) {
        let mut ids = self.prompt.clone();
        ids.extend_from_slice(&self.completion);
        let mut trained = vec![false; self.prompt.len()];
        trained.extend(std::iter::repeat_n(true, self.completion.len()));
        let n = ids.len();
        if n <= max_len {
            return (TokenSeq { ids, trained }, false);
        }
        let keep = match cut {
            Cut::Sequence(TruncationMode::KeepStart) => 0..max_len,
            Cut::Sequence(TruncationMode::KeepEnd) => n - max_len..n,
            Cut::Completion => 0..max_len.max(self.prompt.len()),
        };
        let seq = TokenSeq {
            ids: ids[keep.clone()].to_vec(),
            trained: trained[keep].to_vec(),
        };
        (seq, true)
    }

    /// Whether cutting to `max_len` leaves no completion token: TRL drops
    /// such rows (a prompt of `max_len` tokens or more).
    pub fn prompt_fills(&self, max_len: usize, cut: Cut) -> bool {
        match cut {
            Cut::Sequence(TruncationMode::KeepStart) | Cut::Completion => {
                self.prompt.len() >= max_len
            }
            Cut::Sequence(TruncationMode::KeepEnd) => self.completion.is_empty(),
        }
    }
}

impl TokenSeq {
    /// Cut to `max_len` tokens as `mode` says; whether anything was cut.
    pub fn truncate(&mut self, max_len: usize, mode: TruncationMode) -> bool {
        let n = self.ids.len();
        if n <= max_len {
            return false;
        }
        let keep = match mode {
            TruncationMode::KeepStart => 0..max_len,
            TruncationMode::KeepEnd => n - max_len..n,
        };
        self.ids = self.ids[keep.clone()].to_vec();
        self.trained = self.trained[keep].to_vec();
        true
    }
}

/// Tokenize a prompt and a completion string (the assistant's answer).
pub fn tokenize_prompt_completion(
    tok: &TextTokenizer,
    prompt: &Prompt,
    completion: &str,
) -> Result<PromptCompletion> {
    let mut conversation = prompt.0.clone();
    conversation.push(Message::new("assistant", completion));
    let segs = tok.segments(&conversation)?;
    // Everything before the (last) answer is prompt; the answer and what the
    // template puts after it (end-of-turn tokens) is completion.
    let last_answer = segs
        .iter()
        .rposition(|(_, trained)| *trained)
        .context("the conversation has no answer")?;
    let prompt_text: String = segs[..last_answer]
        .iter()
        .map(|(s, _)| s.as_str())
        .collect();
    let completion_text: String = segs[last_answer..]
        .iter()
        .map(|(s, _)| s.as_str())
        .collect();
    let prompt_ids = if tok.template.is_none() {
        tok.encode_with_specials(&prompt_text)?
    } else {
        tok.encode(&prompt_text)?
    };
    Ok(PromptCompletion {
        prompt: prompt_ids,
        completion: tok.encode(&completion_text)?,
    })
}

/// Tokenize an SFT example: every assistant turn trained, the rest context.
pub fn tokenize_sft(tok: &TextTokenizer, example: &Example) -> Result<TokenSeq> {
    let mut seq = TokenSeq {
        ids: Vec::new(),
        trained: Vec::new(),
    };
    match example {
        Example::Text(text) => {
            let mut ids = tok.encode_with_specials(text)?;
            ids.push(tok.eos_ids[0]);
            seq.trained = vec![true; ids.len()];
            seq.ids = ids;
        }
        Example::Sft(messages) => {
            for (i, (text, trained)) in tok.segments(messages)?.iter().enumerate() {
                let ids = if i == 0 && tok.template.is_none() {
                    tok.encode_with_specials(text)?
                } else {
                    tok.encode(text)?
                };
                seq.trained.extend(std::iter::repeat_n(*trained, ids.len()));
                seq.ids.extend(ids);
            }
        }
        _ => bail!("not an SFT example"),
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised() {
        let text = r#"{"prompt": "Is rain wet?", "completion": "Yes."}
{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
{"instruction": "Add", "input": "2 and 2", "output": "4"}

{"text": "plain words"}"#;
        let rows = parse_jsonl(text, DataKind::Sft).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[2],
            Example::Sft(vec![
                Message::new("user", "Add\n\n2 and 2"),
                Message::new("assistant", "4")
            ])
        );
    }

    #[test]
    fn bad_rows_name_their_line() {
        let text = "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\"";
        let err = parse_jsonl(text, DataKind::Sft).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("line 2: not valid JSON"),
            "{err:#}"
        );

        let text = "{\"prompt\": \"a\", \"chosen\": \"b\"}";
        let err = parse_jsonl(text, DataKind::Preference).unwrap_err();
        assert_eq!(format!("{err:#}"), "line 1: missing the field \"rejected\"");

        let text = "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}";
        let err = parse_jsonl(text, DataKind::Sft).unwrap_err();
        assert!(format!("{err:#}").contains("a preference row"), "{err:#}");

        let err = parse_jsonl("\n\n", DataKind::Sft).unwrap_err();
        assert!(err.to_string().contains("no rows"));

        let text = "{\"prompt\": \"a\", \"completion\": \"b\", \"label\": \"yes\"}";
        let err = parse_jsonl(text, DataKind::Kto).unwrap_err();
        assert!(
            format!("{err:#}").contains("\"label\" must be true or false"),
            "{err:#}"
        );
    }

    #[test]
    fn preference_rows_unpair_for_kto() {
        let text = "{\"prompt\": \"q\", \"chosen\": \"good\", \"rejected\": \"bad\"}";
        let rows = parse_jsonl(text, DataKind::Kto).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(matches!(&rows[0], Example::Kto(k) if k.label && k.completion == "good"));
        assert!(matches!(&rows[1], Example::Kto(k) if !k.label && k.completion == "bad"));
    }

    #[test]
    fn truncation_follows_trl_modes() {
        let pc = PromptCompletion {
            prompt: vec![1, 2, 3, 4],
            completion: vec![5, 6, 7, 8],
        };
        let (seq, cut) = pc.to_seq(8, Cut::Sequence(TruncationMode::KeepStart));
        assert!(!cut);
        assert_eq!(seq.ids, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        // keep_start: the end of the completion goes.
        let (seq, cut) = pc.to_seq(6, Cut::Sequence(TruncationMode::KeepStart));
        assert!(cut);
        assert_eq!(seq.ids, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(seq.trained, vec![false, false, false, false, true, true]);
        // keep_end: the start of the prompt goes.
        let (seq, _) = pc.to_seq(6, Cut::Sequence(TruncationMode::KeepEnd));
        assert_eq!(seq.ids, vec![3, 4, 5, 6, 7, 8]);
        assert_eq!(seq.trained, vec![false, false, true, true, true, true]);
        // CPO/ORPO: the prompt stays whole even past max_len.
        let (seq, _) = pc.to_seq(6, Cut::Completion);
        assert_eq!(seq.ids, vec![1, 2, 3, 4, 5, 6]);
        let (seq, _) = pc.to_seq(3, Cut::Completion);
        assert_eq!(seq.ids, vec![1, 2, 3, 4]);
        assert!(pc.prompt_fills(4, Cut::Sequence(TruncationMode::KeepStart)));
        assert!(!pc.prompt_fills(5, Cut::Sequence(TruncationMode::KeepStart)));
        assert!(!pc.prompt_fills(2, Cut::Sequence(TruncationMode::KeepEnd)));
        let mut s = TokenSeq {
            ids: vec![1, 2, 3, 4, 5],
            trained: vec![false, false, true, true, true],
        };
        assert!(s.truncate(3, TruncationMode::KeepEnd));
        assert_eq!(s.ids, vec![3, 4, 5]);
    }
}
