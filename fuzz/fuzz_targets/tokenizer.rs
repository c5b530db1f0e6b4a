//! Tokenizer construction from GGUF metadata, then encode/decode of arbitrary text.
//! Input: a little-endian u32 length, that many bytes of GGUF header, then the text. A first byte
//! below 4 instead picks one of the test models' vocabularies (models/, read once) for the text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wasm_chord::gguf::{parse_header, read_header_from_path, HeaderParse};
use wasm_chord::tokenizer::Tokenizer;

fn real() -> &'static [Tokenizer] {
    static T: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    T.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        [
            "tiny-random-llama-q4_k_m.gguf",
            "smollm2-135m-instruct-q4_k_m.gguf",
            "gemma-3-270m-q4_k_m.gguf",
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ]
        .iter()
        .filter_map(|m| read_header_from_path(dir.join(m)).ok())
        .filter_map(|h| Tokenizer::from_gguf(&h).ok())
        .collect()
    })
}

fn exercise(t: &Tokenizer, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    for (add, parse) in [(true, true), (false, false)] {
        if let Ok(ids) = t.encode(&text, add, parse) {
            let _ = t.decode(&ids, true);
            let _ = t.decode(&ids, false);
            let mut d = t.stream_decoder(false);
            for &id in &ids {
                let _ = d.push(id);
            }
            let _ = d.finish();
        }
    }
    // Arbitrary ids, in and out of the vocabulary.
    let ids: Vec<u32> = text
        .as_bytes()
        .chunks(2)
        .map(|c| c.iter().fold(0u32, |a, &b| a * 509 + b as u32))
        .collect();
    let _ = t.decode(&ids, true);
}

fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 && data[0] < 4 {
        let real = real();
        if !real.is_empty() {
            exercise(&real[data[0] as usize % real.len()], &data[1..]);
        }
        return;
    }
    if data.len() < 4 {
        return;
    }
    let n = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
    let rest = &data[4..];
    let (head, text) = rest.split_at(n.min(rest.len()));
    if let Ok(HeaderParse::Complete(h)) = parse_header(head, None) {
        if let Ok(t) = Tokenizer::from_gguf(&h) {
            exercise(&t, text);
        }
    }
});
