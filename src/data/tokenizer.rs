//! A model's tokenizer together with its chat template and special tokens.

use super::chat::{ChatTemplate, Message};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// Tokenizer, chat template and the ids that matter for training.
#[derive(Clone)]
pub struct TextTokenizer {
    pub inner: tokenizers::Tokenizer,
    pub template: Option<ChatTemplate>,
    pub bos_id: Option<u32>,
    /// Ids that end an answer (first is the one appended to completions).
    pub eos_ids: Vec<u32>,
    pub pad_id: u32,
    /// The text of the eos token, appended to completions when no chat
    /// template is used.
    pub eos_token: String,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .field("pad_id", &self.pad_id)
            .field("template", &self.template.is_some())
            .finish()
    }
}

/// How prompts are turned into text before tokenization.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateChoice {
    /// The model's own template (an error if it has none).
    Model,
    /// No template: prompt and completion are concatenated as they are.
    None,
    /// A template given in the recipe.
    Custom(String),
}

impl TextTokenizer {
    /// Build from a `tokenizer.json` text and the fields of a
    /// `tokenizer_config.json` (chat_template, bos_token, eos_token, pad_token).
    pub fn from_json(
        tokenizer_json: &str,
        config: Option<&Value>,
        choice: &TemplateChoice,
    ) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(tokenizer_json.as_bytes())
            .map_err(|e| anyhow!("tokenizer.json does not load: {e}"))?;
        Self::from_tokenizer(inner, config, choice)
    }

    pub fn from_tokenizer(
        inner: tokenizers::Tokenizer,
        config: Option<&Value>,
        choice: &TemplateChoice,
    ) -> Result<Self> {
        let token_field = |key: &str| -> Option<String> {
            let v = config?.get(key)?;
            match v {
                Value::String(s) => Some(s.clone()),
                // {"content": "<s>", ...} (AddedToken form)
                Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
                _ => None,
            }
        };
        let bos_token = token_field("bos_token");
        let eos_token = token_field("eos_token")
            .or_else(|| {
                ["<|im_end|>", "<|eot_id|>", "</s>", "<|endoftext|>"]
                    .iter()
                    .find(|t| inner.token_to_id(t).is_some())
                    .map(|t| t.to_string())
            })
            .context("the tokenizer names no eos token (tokenizer_config.json \"eos_token\")")?;
        let eos_id = inner
            .token_to_id(&eos_token)
            .with_context(|| format!("the eos token {eos_token:?} is not in the vocabulary"))?;
        let bos_id = bos_token.as_deref().and_then(|t| inner.token_to_id(t));
        let pad_id = token_field("pad_token")
            .and_then(|t| inner.token_to_id(&t))
            .unwrap_or(eos_id);
        let model_template = config
            .and_then(|c| c.get("chat_template"))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                // A list of named templates: take "default".
                Value::Array(a) => a
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .and_then(|t| t.get("template"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => None,
            });
        let source = match choice {
            TemplateChoice::None => None,
            TemplateChoice::Custom(s) => Some(s.clone()),
            TemplateChoice::Model => match model_template {
                Some(t) => Some(t),
                None => bail!(
                    "the model has no chat template; set `chat_template = \"none\"` in the recipe's \
                     [model] table to train on plain prompt + completion text, or give a template there"
                ),
            },
        };
        let template = source
            .map(|s| ChatTemplate::new(&s, bos_token.as_deref().unwrap_or(""), &eos_token))
            .transpose()?;
        Ok(Self {
            inner,
            template,
            bos_id,
            eos_ids: vec![eos_id],
            pad_id,
            eos_token,
        })
    }

    /// Token ids of `text`; special tokens written in the text are recognised,
    /// none are added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("cannot tokenize: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids with the tokenizer's own special tokens added (a BOS, for
    /// models whose post-processor adds one).
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| anyhow!("cannot tokenize: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| anyhow!("cannot decode: {e}"))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The text that precedes an answer to `prompt` (template applied).
    pub fn prompt_text(&self, prompt: &[Message]) -> Result<String> {
        match &self.template {
            Some(t) => t.render(prompt, true),
            None => Ok(prompt
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n")),
        }
    }

    /// Split a conversation into text segments, each marked whether it is an
    /// assistant turn (trained on) or context; concatenated they are the full
    /// rendered conversation.
    pub fn segments(&self, messages: &[Message]) -> Result<Vec<(String, bool)>> {
        let Some(t) = &self.template else {
            // Plain text: context, then the last assistant answer and eos.
            let (last, ctx) = messages.split_last().context("an empty conversation")?;
            let ctx_text = ctx
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n");
            let sep = if ctx_text.is_empty() { "" } else { "\n\n" };
            return Ok(vec![
                (format!("{ctx_text}{sep}"), false),
                (
                    format!("{}{}", last.content, self.eos_token),
                    last.role == "assistant",
                ),
            ]);
        };
        let mut segs = Vec::new();
        let mut done = String::new();
        for (i, m) in messages.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            let before = t.render(&messages[..i], true)?;
            let through = t.render(&messages[..=i], false)?;
            let Some(ctx) = before.strip_prefix(done.as_str()) else {
                bail!("the chat template renders earlier turns differently once later ones follow; cannot find the answer's tokens");
            };
            let Some(answer) = through.strip_prefix(before.as_str()) else {
                bail!("the chat template's generation prompt is not a prefix of the rendered answer; cannot find the answer's tokens");
            };
            if !ctx.is_empty() {
                segs.push((ctx.to_string(), false));
            }
            segs.push((answer.to_string(), true));
            done = through;
        }
        let full = t.render(messages, false)?;
        if let Some(rest) = full.strip_prefix(done.as_str()) {
            if !rest.is_empty() {
                segs.push((rest.to_string(), false));
            }
        }
        Ok(segs)
    }
}
