//! Tokenizer parity with llama.cpp: every corpus line, every test model, with and without
//! special-token parsing, must give llama.cpp's ids exactly. Goldens come from
//! `scripts/gen-tokenizer-goldens` (see tests/goldens/tokenizer/README.md).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value as Json;
use wasm_chord::gguf::read_header_from_path;
use wasm_chord::tokenizer::{Tokenizer, Vocab, VocabData, VocabType};

fn golden_dir() -> PathBuf {
    common::root().join("tests/goldens/tokenizer")
}

fn corpus() -> Vec<String> {
    let text = std::fs::read_to_string(golden_dir().join("corpus.jsonl")).unwrap();
    let corpus: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(corpus.len() >= 60);
    corpus
}

fn golden(stem: &str) -> Json {
    let path = golden_dir().join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/gen-tokenizer-goldens)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn rows(v: &Json) -> Vec<Vec<u32>> {
    v.as_array().unwrap().iter().map(ids).collect()
}

fn vocab_data(model: &str) -> VocabData {
    let header = read_header_from_path(common::model_path(model)).unwrap();
    VocabData::from_gguf(&header).unwrap()
}

fn load(model: &str) -> Tokenizer {
    let header = read_header_from_path(common::model_path(model)).unwrap();
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(&header).unwrap();
    eprintln!("{model}: vocabulary loaded in {:?}", t0.elapsed());
    tok
}

/// Compares encodings of the whole corpus; reports every mismatch.
fn check_cases(
    what: &str,
    tok: &Tokenizer,
    corpus: &[String],
    expected: &[Vec<u32>],
    parse_special: bool,
) -> Vec<String> {
    assert_eq!(
        expected.len(),
        corpus.len(),
        "{what}: golden has another corpus size"
    );
    let mut bad = Vec::new();
    for (i, (text, want)) in corpus.iter().zip(expected).enumerate() {
        let got = tok.encode(text, true, parse_special).unwrap();
        if &got != want {
            bad.push(format!(
                "{what} case {i} {text:?} (parse_special={parse_special}):\n  llama.cpp {want:?}\n  ours      {got:?}"
            ));
        }
    }
    bad
}

fn check_model(stem: &str) {
    let g = golden(stem);
    let model = g["model"].as_str().unwrap();
    let tok = load(model);
    let corpus = corpus();
    let v = tok.vocab();

    // The vocabulary as llama.cpp resolves it.
    let info = &g["vocab"];
    let opt = |x: &Json| x.as_u64().map(|x| x as u32);
    assert_eq!(
        v.n_tokens() as u64,
        info["size"].as_u64().unwrap(),
        "{model}: size"
    );
    assert_eq!(v.bos(), opt(&info["bos"]), "{model}: bos");
    assert_eq!(v.eos(), opt(&info["eos"]), "{model}: eos");
    assert_eq!(v.eot(), opt(&info["eot"]), "{model}: eot");
    assert_eq!(
        v.add_bos(),
        info["add_bos"].as_bool().unwrap(),
        "{model}: add_bos"
    );
    assert_eq!(
        v.add_eos(),
        info["add_eos"].as_bool().unwrap(),
        "{model}: add_eos"
    );
    assert_eq!(
        v.eog_ids().collect::<Vec<_>>(),
        ids(&info["eog_ids"]),
        "{model}: eog ids"
    );
    let expected_type = match info["type"].as_str().unwrap() {
        "spm" => VocabType::Spm,
        _ => VocabType::Bpe,
    };
    assert_eq!(v.vocab_type(), expected_type);

    // Encoding, both modes.
    let plain = rows(&g["plain"]);
    let special = rows(&g["special"]);
    let mut bad = check_cases(model, &tok, &corpus, &plain, false);
    bad.extend(check_cases(model, &tok, &corpus, &special, true));

    // llama.cpp's detokenizer on a sample of cases.
    for d in g["decode"].as_array().unwrap() {
        let i = d["case"].as_u64().unwrap() as usize;
        let parse_special = d["parse_special"].as_bool().unwrap();
        let ids = if parse_special {
            &special[i]
        } else {
            &plain[i]
        };
        let got = tok.decode(ids, d["special"].as_bool().unwrap()).unwrap();
        let want = d["text"].as_str().unwrap();
        if got != want {
            bad.push(format!(
                "{model} decode case {i} {ids:?}:\n  llama.cpp {want:?}\n  ours      {got:?}"
            ));
        }
    }

    // Round trips where llama.cpp's detokenizer inverts the tokenizer.
    let bos_text = if v.add_bos() {
        v.bos()
            .map(|b| v.token_text(b).unwrap().to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    for (i, text) in corpus.iter().enumerate() {
        if v.vocab_type() == VocabType::Spm && text.contains('\u{2581}') {
            continue; // a literal U+2581 decodes as a space
        }
        let (plain_want, special_want) = match (v.vocab_type(), v.add_space_prefix()) {
            // Byte-level BPE without space clean-up is lossless.
            (VocabType::Bpe, _) if !v.clean_spaces() => (text.clone(), text.clone()),
            // SentencePiece without a space prefix: lossless apart from BOS.
            (VocabType::Spm, false) => (text.clone(), format!("{bos_text}{text}")),
            // With a space prefix, llama.cpp keeps the space it added after BOS.
            (VocabType::Spm, true) if !text.is_empty() => (format!(" {text}"), String::new()),
            _ => continue,
        };
        let got = tok.decode(&plain[i], false).unwrap();
        if got != plain_want {
            bad.push(format!(
                "{model} round trip case {i}: {got:?} != {plain_want:?}"
            ));
        }
        if !special_want.is_empty() || text.is_empty() {
            let got = tok.decode(&special[i], true).unwrap();
            if got != special_want {
                bad.push(format!(
                    "{model} special round trip case {i}: {got:?} != {special_want:?}"
                ));
            }
        }
    }

    // Streaming gives the same text as decoding, token by token.
    for ids in plain.iter().chain(&special) {
        let mut s = tok.stream_decoder(true);
        let mut streamed = String::new();
        for &id in ids {
            streamed.push_str(&s.push(id).unwrap());
        }
        streamed.push_str(&s.finish());
        let pieces: Vec<u8> = ids
            .iter()
            .flat_map(|&id| tok.token_to_piece(id, true).unwrap().into_owned())
            .collect();
        assert_eq!(
            streamed,
            String::from_utf8_lossy(&pieces),
            "{model}: stream {ids:?}"
        );
    }

    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model("smollm2-135m-instruct-q4_k_m");
}

#[test]
fn smollm2_variants_match_llama_cpp() {
    // Only the model name may differ.
    let vocab_only = |m: &str| VocabData {
        model_name: None,
        ..vocab_data(m)
    };
    let base = vocab_only("smollm2-135m-instruct-q4_k_m.gguf");
    for m in [
        "smollm2-135m-instruct-pad768-q4_k_m.gguf",
        "smollm2-135m-instruct-q4_1.gguf",
    ] {
        // (not assert_eq: the debug output would be the whole vocabulary)
        assert!(
            vocab_only(m) == base,
            "{m} should share SmolLM2's vocabulary"
        );
    }
    check_model("smollm2-135m-instruct-pad768-q4_k_m");
    check_model("smollm2-135m-instruct-q4_1");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model("gemma-3-270m-q4_k_m");
}

#[test]
fn qwen25_coder_matches_llama_cpp() {
    check_model("qwen2.5-coder-0.5b-instruct-q4_k_m");
}

#[test]
fn tiny_llama_matches_llama_cpp() {
    check_model("tiny-random-llama-q4_k_m");
}

/// Pre-tokenizers no test model uses, checked on SmolLM2's vocabulary with another
/// `tokenizer.ggml.pre` (llama.cpp ran on synthetic vocab-only GGUF files).
#[test]
fn pre_tokenizers_match_llama_cpp() {
    let g = golden("pre-tokenizers");
    let base = vocab_data(g["vocab"].as_str().unwrap());
    let corpus = corpus();
    let mut bad = Vec::new();
    for pre in g["pre"].as_array().unwrap() {
        let pre = pre.as_str().unwrap();
        let mut data = base.clone();
        data.pre = Some(pre.to_string());
        let tok = Tokenizer::new(Vocab::new(data).unwrap()).unwrap();
        bad.extend(check_cases(pre, &tok, &corpus, &rows(&g[pre]), false));
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn chat_prompt_with_special_tokens() {
    let tok = load("smollm2-135m-instruct-q4_k_m.gguf");
    let ids = tok
        .encode("<|im_start|>user\nHi<|im_end|>\n", false, true)
        .unwrap();
    assert_eq!(ids[0], 1, "<|im_start|>");
    assert!(tok.vocab().is_eog(2), "<|im_end|> ends generation");
    assert_eq!(
        tok.decode(&ids, true).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n"
    );
    assert_eq!(tok.decode(&ids, false).unwrap(), "user\nHi\n");
}
