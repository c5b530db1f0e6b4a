//! Chat template rendering with arbitrary messages: the test models' templates (models/, read
//! once) and a template given in the input, over messages parsed from the input as JSON (or,
//! when it is not JSON, built from its NUL-separated pieces).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wasm_chord::gguf::read_header_from_path;
use wasm_chord::tokenizer::chat_template::{
    messages_from_value, ChatMessage, ChatTemplate, RenderOptions,
};

fn real() -> &'static [ChatTemplate] {
    static T: OnceLock<Vec<ChatTemplate>> = OnceLock::new();
    T.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        [
            "smollm2-135m-instruct-q4_k_m.gguf",
            "gemma-3-270m-q4_k_m.gguf",
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ]
        .iter()
        .filter_map(|m| read_header_from_path(dir.join(m)).ok())
        .filter_map(|h| ChatTemplate::from_gguf(&h).ok())
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let msgs: Vec<ChatMessage> = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => match messages_from_value(&v) {
            Ok(m) => m,
            Err(_) => return,
        },
        Err(_) => {
            let roles = ["system", "user", "assistant", "tool", "developer"];
            text.split('\0')
                .enumerate()
                .map(|(i, c)| ChatMessage::new(roles[(i + c.len()) % roles.len()], c.to_owned()))
                .collect()
        }
    };
    for add in [true, false] {
        let opts = RenderOptions {
            add_generation_prompt: add,
            ..Default::default()
        };
        for t in real() {
            let _ = t.render(&msgs, &opts);
        }
    }
    // The input's first piece as a template source of its own (bounded by minijinja's fuel).
    if let Some((src, _)) = text.split_once('\0') {
        if let Ok(t) = ChatTemplate::new(src, "<s>", "</s>") {
            let _ = t.render(&msgs, &RenderOptions::default());
        }
    }
});
