//! Real models' chat templates rendered by minijinja equal Jinja2's renders
//! (tests/fixtures/templates, made by scripts/reference/chat_templates.py).

use driftui::data::chat::ChatTemplate;
use driftui::data::Message;
use std::path::PathBuf;

#[test]
fn templates_render_like_jinja2() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let f: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let t = ChatTemplate::new(
            f["template"].as_str().unwrap(),
            f["bos_token"].as_str().unwrap(),
            f["eos_token"].as_str().unwrap(),
        )
        .unwrap();
        for c in f["cases"].as_array().unwrap() {
            let msgs: Vec<Message> = serde_json::from_value(c["messages"].clone()).unwrap();
            let got = t
                .render(&msgs, c["add_generation_prompt"].as_bool().unwrap())
                .unwrap();
            assert_eq!(
                got,
                c["text"].as_str().unwrap(),
                "{}: {msgs:?}",
                p.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked}");
}
