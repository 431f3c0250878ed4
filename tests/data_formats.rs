//! The study's data formats: Parquet files written by pyarrow, in TRL's
//! conversational formats, read into the rows TRL 1.16 trains on — the same
//! prompt, chosen, rejected, completion and text strings after
//! SmolLM2's chat template (`tests/fixtures/datasets/trl_rendered.json`,
//! made by `scripts/reference/trl_datasets.py` with TRL's own
//! `extract_prompt` and `apply_chat_template`).

use driftui::data::{
    load_file, parquet::load_parquet, prompt_completion_text, Columns, DataKind, Example, Prompt,
    TemplateChoice, TextTokenizer,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datasets")
}

fn rendered() -> Value {
    let text = std::fs::read_to_string(dir().join("trl_rendered.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Any tokenizer renders text; this one carries SmolLM2's own template.
fn tokenizer(template: &str) -> TextTokenizer {
    let json = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/builtin/tokenizer.json"),
    )
    .unwrap();
    let cfg = serde_json::json!({ "eos_token": "<|im_end|>", "bos_token": "<|im_start|>" });
    TextTokenizer::from_json(&json, Some(&cfg), &TemplateChoice::Custom(template.into())).unwrap()
}

fn trl_rows(name: &str) -> Vec<Value> {
    rendered()["files"][name].as_array().unwrap().clone()
}

fn text(tok: &TextTokenizer, p: &Prompt, completion: &str) -> (String, String) {
    prompt_completion_text(tok, p, completion).unwrap()
}

#[test]
fn conversational_preference_rows_render_as_trl_renders_them() {
    let r = rendered();
    let tok = tokenizer(r["chat_template"].as_str().unwrap());
    for name in [
        "preference_conversational.parquet",
        "preference_implicit.parquet",
    ] {
        let rows = load_parquet(&dir().join(name), DataKind::Preference, &Columns::default())
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let want = trl_rows(name);
        assert_eq!(rows.len(), want.len(), "{name}");
        for (got, want) in rows.iter().zip(&want) {
            let Example::Preference(p) = got else {
                panic!("{name}: {got:?}")
            };
            let (prompt, chosen) = text(&tok, &p.prompt, &p.chosen);
            let (prompt_r, rejected) = text(&tok, &p.prompt, &p.rejected);
            assert_eq!(prompt, want["prompt"].as_str().unwrap(), "{name}");
            assert_eq!(prompt_r, prompt);
            assert_eq!(chosen, want["chosen"].as_str().unwrap(), "{name}");
            assert_eq!(rejected, want["rejected"].as_str().unwrap(), "{name}");
        }
    }
}

#[test]
fn implicit_plain_text_prompts_split_where_trl_splits_them() {
    let rows = load_parquet(
        &dir().join("preference_implicit_text.parquet"),
        DataKind::Preference,
        &Columns::default(),
    )
    .unwrap();
    let want = trl_rows("preference_implicit_text.parquet");
    assert_eq!(rows.len(), 2);
    for (got, want) in rows.iter().zip(&want) {
        let Example::Preference(p) = got else {
            panic!("{got:?}")
        };
        // A plain-text prompt is one user turn.
        assert_eq!(p.prompt.0.len(), 1);
        assert_eq!(p.prompt.0[0].content, want["prompt"].as_str().unwrap());
        assert_eq!(p.chosen, want["chosen"].as_str().unwrap());
        assert_eq!(p.rejected, want["rejected"].as_str().unwrap());
    }
}

#[test]
fn messages_with_a_system_turn_and_wildchat_columns_render_as_trl_renders_them() {
    let r = rendered();
    let tok = tokenizer(r["chat_template"].as_str().unwrap());
    let wildchat = Columns::new(BTreeMap::from([(
        "messages".to_string(),
        "conversation".to_string(),
    )]));
    for (name, cols) in [
        ("sft_messages.parquet", Columns::default()),
        ("wildchat_like.parquet", wildchat),
    ] {
        let rows = load_parquet(&dir().join(name), DataKind::Sft, &cols)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let want = trl_rows(name);
        assert_eq!(rows.len(), want.len());
        for (got, want) in rows.iter().zip(&want) {
            let Example::Sft(messages) = got else {
                panic!("{got:?}")
            };
            let full: String = tok
                .segments(messages)
                .unwrap()
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            assert_eq!(full, want["text"].as_str().unwrap(), "{name}");
        }
    }
}

#[test]
fn kto_and_alpaca_rows() {
    let r = rendered();
    let tok = tokenizer(r["chat_template"].as_str().unwrap());
    let rows = load_parquet(
        &dir().join("kto_conversational.parquet"),
        DataKind::Kto,
        &Columns::default(),
    )
    .unwrap();
    let want = trl_rows("kto_conversational.parquet");
    for (got, want) in rows.iter().zip(&want) {
        let Example::Kto(k) = got else {
            panic!("{got:?}")
        };
        let (prompt, completion) = text(&tok, &k.prompt, &k.completion);
        assert_eq!(prompt, want["prompt"].as_str().unwrap());
        assert_eq!(completion, want["completion"].as_str().unwrap());
        assert_eq!(k.label, want["label"].as_bool().unwrap());
    }
    // Alpaca is no TRL format: driftui's own reading (instruction, then the
    // input after a blank line, as one user turn).
    let rows = load_file(
        &dir().join("alpaca.parquet"),
        DataKind::Sft,
        &Columns::default(),
    )
    .unwrap();
    let Example::Sft(m) = &rows[1] else {
        panic!("{:?}", rows[1])
    };
    assert_eq!(
        m[0].content,
        "Summarise the text.\n\nUniforms reduce bullying, some say."
    );
    assert_eq!(m[1].content, "Uniforms may reduce bullying.");
    let Example::Sft(m) = &rows[0] else {
        panic!("{:?}", rows[0])
    };
    assert_eq!(m[0].content, "Give one argument for school uniforms.");
}

#[test]
fn bad_parquet_files_are_refused_with_the_file_row_and_columns() {
    let err = format!(
        "{:#}",
        load_parquet(
            &dir().join("bad_missing_column.parquet"),
            DataKind::Preference,
            &Columns::default()
        )
        .unwrap_err()
    );
    assert!(err.contains("bad_missing_column.parquet"), "{err}");
    assert!(
        err.contains("missing the column \"rejected\"; its columns are: prompt, chosen"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        load_parquet(
            &dir().join("bad_roles_out_of_order.parquet"),
            DataKind::Sft,
            &Columns::default()
        )
        .unwrap_err()
    );
    assert!(
        err.contains("bad_roles_out_of_order.parquet, row 1 (0-based)"),
        "{err}"
    );
    assert!(
        err.contains(
            "\"messages\": turn 1 is a \"user\" turn after a \"user\" turn; roles out of order"
        ),
        "{err}"
    );
    // A mapped column that is not there names it and the columns there are.
    let cols = Columns::new(BTreeMap::from([(
        "messages".to_string(),
        "conversations".to_string(),
    )]));
    let err = format!(
        "{:#}",
        load_parquet(&dir().join("wildchat_like.parquet"), DataKind::Sft, &cols).unwrap_err()
    );
    assert!(
        err.contains("missing the column \"conversations\" (mapped to \"messages\" in the phase's columns); its columns are: conversation_hash, model, conversation, turn, openai_moderation, toxic"),
        "{err}"
    );
    // Without the mapping the format cannot be told.
    let err = format!(
        "{:#}",
        load_parquet(
            &dir().join("wildchat_like.parquet"),
            DataKind::Sft,
            &Columns::default()
        )
        .unwrap_err()
    );
    assert!(err.contains("cannot tell the dataset's format"), "{err}");
}

#[test]
fn jsonl_rows_take_the_same_columns_and_turn_order_rules() {
    use driftui::data::parse_jsonl_with;
    let cols = Columns::new(BTreeMap::from([(
        "messages".to_string(),
        "conversation".to_string(),
    )]));
    let text = r#"{"conversation": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "model": "x"}
{"conversation": [{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi"}]}"#;
    let err = format!(
        "{:#}",
        parse_jsonl_with(text, DataKind::Sft, &cols).unwrap_err()
    );
    assert!(
        err.starts_with("line 2: \"messages\": turn 0 is a \"assistant\" turn at the start"),
        "{err}"
    );
    let rows = parse_jsonl_with(text.lines().next().unwrap(), DataKind::Sft, &cols).unwrap();
    assert_eq!(rows.len(), 1);
    // A system turn later than first is out of order too.
    let text = r#"{"prompt": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "chosen": "c", "rejected": "d"}"#;
    let err = format!(
        "{:#}",
        driftui::data::parse_jsonl(text, DataKind::Preference).unwrap_err()
    );
    assert!(
        err.contains("turn 1 is a \"system\" turn after a \"user\" turn"),
        "{err}"
    );
    // Implicit prompts with no shared beginning cannot be split.
    let text = r#"{"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "rejected": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}"#;
    let err = format!(
        "{:#}",
        driftui::data::parse_jsonl(text, DataKind::Preference).unwrap_err()
    );
    assert!(err.contains("no shared prompt to split off"), "{err}");
}
