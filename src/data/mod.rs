//! Datasets in the formats TRL users already have (JSONL or Parquet, the
//! hub's format), tokenization with the model's chat template, truncation,
//! and batching.
//!
//! - SFT: `{"prompt","completion"}`, `{"messages":[{"role","content"}...]}`,
//!   Alpaca `{"instruction","input","output"}`, or `{"text"}`;
//! - preference: `{"prompt","chosen","rejected"}`, or `{"chosen","rejected"}`
//!   with the prompt implicit in both (HH-RLHF): their shared beginning is
//!   split off as TRL's `extract_prompt` does;
//! - KTO: `{"prompt","completion","label"}`.
//!
//! Prompts and completions may be strings or lists of messages (TRL's
//! "conversational" form); a conversation's turns must come in order (an
//! optional system turn first, then user and assistant in turn). Columns
//! under other names are mapped with the phase's `columns`.

pub mod batch;
pub mod chat;
pub mod parquet;
pub mod tokenizer;

pub use batch::{Batcher, PairBatch, SeqBatch};
pub use chat::Message;
pub use tokenizer::{TemplateChoice, TextTokenizer};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The fields driftui reads from a row (TRL's names); `columns` maps them
/// to a dataset's own column names.
pub const FIELDS: [&str; 10] = [
    "prompt",
    "chosen",
    "rejected",
    "completion",
    "label",
    "messages",
    "instruction",
    "input",
    "output",
    "text",
];

/// A phase's `columns`: TRL's field name → the dataset's column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns(BTreeMap<String, String>);

impl Columns {
    pub fn new(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }

    /// (field, column) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(f, c)| (f.as_str(), c.as_str()))
    }

    /// The column a field is read from, when mapped.
    pub fn column_of(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// Whether `column` is the source of some mapped field.
    pub fn maps_column(&self, column: &str) -> bool {
        self.0.values().any(|c| c == column)
    }

    /// A JSONL row under TRL's names: mapped columns renamed to their
    /// field, a mapped column that is absent an error.
    fn apply(&self, mut row: Map<String, Value>) -> Result<Map<String, Value>> {
        if self.0.is_empty() {
            return Ok(row);
        }
        let mut out = Map::new();
        for (field, col) in &self.0 {
            match row.remove(col) {
                Some(v) => {
                    out.insert(field.clone(), v);
                }
                None => {
                    let keys: Vec<&str> = row.keys().map(String::as_str).collect();
                    bail!(
                        "missing the column \"{col}\" (mapped to \"{field}\" in the phase's columns); the row has {}",
                        keys.join(", ")
                    );
                }
            }
        }
        for (k, v) in row {
            out.entry(k).or_insert(v);
        }
        Ok(out)
    }
}

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
    /// A prompt alone, for on-policy RL (the policy writes the completions).
    Prompt(Prompt),
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
    /// Prompts for on-policy RL (GRPO, PPO).
    Prompt,
}

impl DataKind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            DataKind::Sft => "SFT rows ({prompt, completion}, {messages}, {instruction, input, output} or {text})",
            DataKind::Preference => "preference rows ({prompt, chosen, rejected}, or {chosen, rejected} with the prompt implicit in both)",
            DataKind::Kto => "KTO rows ({prompt, completion, label}), or preference rows (each pair becomes one desirable and one undesirable row)",
            DataKind::Prompt => "rows with a prompt ({prompt}, as TRL's GRPOTrainer takes; the prompt of preference, KTO or {prompt, completion} rows)",
        }
    }
}

/// Load a local dataset: Parquet (`.parquet`) or JSONL (anything else).
pub fn load_file(path: &Path, kind: DataKind, columns: &Columns) -> Result<Vec<Example>> {
    if path.extension().is_some_and(|e| e == "parquet") {
        parquet::load_parquet(path, kind, columns)
    } else {
        load_jsonl_with(path, kind, columns)
    }
}

/// Load a JSONL dataset; every bad row is an error naming the file and line.
pub fn load_jsonl(path: &Path, kind: DataKind) -> Result<Vec<Example>> {
    load_jsonl_with(path, kind, &Columns::default())
}

fn load_jsonl_with(path: &Path, kind: DataKind, columns: &Columns) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the dataset {}", path.display()))?;
    parse_jsonl_with(&text, kind, columns)
        .with_context(|| format!("in the dataset {}", path.display()))
}

/// Parse JSONL text (see [`load_jsonl`]); errors name the line.
pub fn parse_jsonl(text: &str, kind: DataKind) -> Result<Vec<Example>> {
    parse_jsonl_with(text, kind, &Columns::default())
}

/// [`parse_jsonl`] with columns under other names.
pub fn parse_jsonl_with(text: &str, kind: DataKind, columns: &Columns) -> Result<Vec<Example>> {
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
        let rows = columns
            .apply(row)
            .and_then(|row| parse_row(&row, kind))
            .with_context(|| format!("line {line_no}"))?;
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

/// One row (under TRL's field names) as the examples it trains on.
pub(crate) fn parse_row(row: &Map<String, Value>, kind: DataKind) -> Result<Vec<Example>> {
    let has = |k: &str| row.contains_key(k);
    if kind == DataKind::Prompt {
        return prompt_row(row).map(|p| vec![Example::Prompt(p)]);
    }
    let found = if has("chosen") || has("rejected") {
        let extracted;
        let row = if has("prompt") || !(has("chosen") && has("rejected")) {
            row
        } else {
            extracted = extract_prompt(row)?;
            &extracted
        };
        let prompt = prompt_field(row)?;
        let chosen = completion_field(row, "chosen")?;
        let rejected = completion_field(row, "rejected")?;
        for (key, answer) in [("chosen", &chosen), ("rejected", &rejected)] {
            let mut conv = prompt.0.clone();
            conv.push(Message::new("assistant", answer));
            check_turn_order(&conv, key)?;
        }
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
            DataKind::Prompt => unreachable!("prompt rows are read above"),
        }
    } else if has("label") {
        let prompt = prompt_field(row)?;
        let mut conv = prompt.0.clone();
        conv.push(Message::new("assistant", "."));
        check_turn_order(&conv, "prompt")?;
        let ex = KtoExample {
            prompt,
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
        check_turn_order(&messages, "messages")?;
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
        check_turn_order(&messages, "prompt")?;
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

/// The prompt of a row for on-policy RL: its `prompt` (a string or a list
/// of messages ending on a user turn), or the shared beginning of an
/// implicit-prompt preference row.
fn prompt_row(row: &Map<String, Value>) -> Result<Prompt> {
    let extracted;
    let row = if !row.contains_key("prompt")
        && row.contains_key("chosen")
        && row.contains_key("rejected")
    {
        extracted = extract_prompt(row)?;
        &extracted
    } else {
        row
    };
    if !row.contains_key("prompt") {
        let keys: Vec<&str> = row.keys().map(String::as_str).collect();
        bail!(
            "no \"prompt\" in the row's fields {keys:?}; expected {}",
            DataKind::Prompt.describe()
        );
    }
    let prompt = prompt_field(row)?;
    let mut conv = prompt.0.clone();
    conv.push(Message::new("assistant", "."));
    check_turn_order(&conv, "prompt")?;
    Ok(prompt)
}

/// TRL's `extract_prompt` (1.16, `trl/data_utils.py`): the longest shared
/// beginning of `chosen` and `rejected` — turns for conversations,
/// characters for strings, one space less where it ends on a space — is
/// the prompt, the rest the two completions. As in TRL, when one is a
/// beginning of the other the cut is one before the shorter one's end.
fn extract_prompt(row: &Map<String, Value>) -> Result<Map<String, Value>> {
    let (c, r) = (&row["chosen"], &row["rejected"]);
    let mut out = row.clone();
    match (c, r) {
        (Value::Array(c), Value::Array(r)) => {
            let n = c.len().min(r.len());
            if n == 0 {
                bail!("\"chosen\" and \"rejected\" must not be empty lists");
            }
            let idx = (0..n).find(|&i| c[i] != r[i]).unwrap_or(n - 1);
            if idx == 0 {
                bail!(
                    "no \"prompt\", and \"chosen\" and \"rejected\" differ from their first \
                     turn: there is no shared prompt to split off"
                );
            }
            out.insert("prompt".into(), Value::Array(c[..idx].to_vec()));
            out.insert("chosen".into(), Value::Array(c[idx..].to_vec()));
            out.insert("rejected".into(), Value::Array(r[idx..].to_vec()));
        }
        (Value::String(c), Value::String(r)) => {
            let (cc, rc): (Vec<char>, Vec<char>) = (c.chars().collect(), r.chars().collect());
            let n = cc.len().min(rc.len());
            if n == 0 {
                bail!("\"chosen\" and \"rejected\" must not be empty");
            }
            let idx = match (0..n).find(|&i| cc[i] != rc[i]) {
                Some(i) if i > 0 && cc[i - 1] == ' ' => i - 1,
                Some(i) => i,
                None => n - 1,
            };
            if idx == 0 {
                bail!(
                    "no \"prompt\", and \"chosen\" and \"rejected\" differ from their first \
                     character: there is no shared prompt to split off"
                );
            }
            let s = |v: &[char]| Value::String(v.iter().collect());
            out.insert("prompt".into(), s(&cc[..idx]));
            out.insert("chosen".into(), s(&cc[idx..]));
            out.insert("rejected".into(), s(&rc[idx..]));
        }
        _ => bail!(
            "no \"prompt\", and \"chosen\" and \"rejected\" are not both strings or both lists \
             of messages, so no shared prompt can be split off"
        ),
    }
    Ok(out)
}

/// A conversation's turns in order: an optional system turn first, then
/// user and assistant in turn, starting with the user.
fn check_turn_order(messages: &[Message], key: &str) -> Result<()> {
    let mut expect = "user";
    for (i, m) in messages.iter().enumerate() {
        let ok = match m.role.as_str() {
            "system" => i == 0,
            r => r == expect,
        };
        if !ok {
            let before = if i == 0 {
                "at the start".to_string()
            } else {
                format!("after a \"{}\" turn", messages[i - 1].role)
            };
            bail!(
                "\"{key}\": turn {i} is a \"{}\" turn {before}; roles out of order (an optional \
                 system turn first, then user and assistant in turn, starting with the user)",
                m.role
            );
        }
        if m.role != "system" {
            expect = if m.role == "user" {
                "assistant"
            } else {
                "user"
            };
        }
    }
    Ok(())
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

/// The text of a prompt and of its completion (the assistant's answer), as
/// they are tokenized: everything before the (last) answer is prompt; the
/// answer and what the template puts after it (end-of-turn tokens) is
/// completion. TRL's `apply_chat_template` gives the same strings.
pub fn prompt_completion_text(
    tok: &TextTokenizer,
    prompt: &Prompt,
    completion: &str,
) -> Result<(String, String)> {
    let mut conversation = prompt.0.clone();
    conversation.push(Message::new("assistant", completion));
    let segs = tok.segments(&conversation)?;
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
    Ok((prompt_text, completion_text))
}

/// Tokenize a prompt and a completion string (the assistant's answer).
pub fn tokenize_prompt_completion(
    tok: &TextTokenizer,
    prompt: &Prompt,
    completion: &str,
) -> Result<PromptCompletion> {
    let (prompt_text, completion_text) = prompt_completion_text(tok, prompt, completion)?;
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
