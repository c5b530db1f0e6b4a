//! Unit tests on small hand-made vocabularies: the algorithms, error cases and streaming.
//! Parity with llama.cpp on real models is tested in `tests/tokenizer.rs`.

use super::*;
use crate::gguf::{Array, GgufHeader, Metadata, Value};

fn byte_token(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// A small SentencePiece vocabulary: unk, bos, eos, 256 byte tokens, then pieces.
fn spm_data(pieces: &[(&str, f32)]) -> VocabData {
    let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(byte_token(b));
        types.push(6);
        scores.push(0.0);
    }
    for (p, s) in pieces {
        tokens.push(p.to_string());
        types.push(1);
        scores.push(*s);
    }
    VocabData {
        model: "llama".into(),
        tokens,
        scores: Some(scores),
        token_types: Some(types),
        ..Default::default()
    }
}

fn spm() -> Tokenizer {
    let data = spm_data(&[
        ("▁", -1.0),
        ("▁h", -2.0),
        ("he", -3.0),
        ("▁he", -1.5),
        ("ll", -2.0),
        ("llo", -1.0),
        ("▁hello", -0.5),
        ("h", -5.0),
        ("e", -5.0),
        ("l", -5.0),
        ("o", -5.0),
        ("▁w", -3.0),
        ("or", -3.0),
        ("ld", -3.0),
        ("w", -5.0),
        ("r", -5.0),
        ("d", -5.0),
    ]);
    Tokenizer::new(Vocab::new(data).unwrap()).unwrap()
}

/// A small byte-level BPE vocabulary: the 256 byte characters, merged tokens, and specials.
fn bpe_data(merges: &[&str], extra: &[&str], specials: &[&str]) -> VocabData {
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|b| unicode::byte_to_char(b).to_string())
        .collect();
    let mut types = vec![1; 256];
    for t in extra {
        tokens.push(t.to_string());
        types.push(1);
    }
    for t in specials {
        tokens.push(t.to_string());
        types.push(3);
    }
    VocabData {
        model: "gpt2".into(),
        pre: Some("gpt-2".into()),
        tokens,
        token_types: Some(types),
        merges: Some(merges.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

fn bpe() -> Tokenizer {
    let data = bpe_data(
        &[
            "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d",
        ],
        &[
            "he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "Ġworl", "Ġworld",
        ],
        &["<|im_start|>", "<|endoftext|>"],
    );
    Tokenizer::new(Vocab::new(data).unwrap()).unwrap()
}

fn id(t: &Tokenizer, text: &str) -> u32 {
    t.vocab().token_id(text).unwrap()
}

#[test]
fn spm_merges_by_score_and_prefixes_a_space() {
    let t = spm();
    assert_eq!(t.encode("hello", false, false).unwrap(), [id(&t, "▁hello")]);
    assert_eq!(
        t.encode("hello", true, false).unwrap(),
        [1, id(&t, "▁hello")],
        "llama defaults: add_bos"
    );
    assert_eq!(
        t.encode("hello world", false, false).unwrap(),
        [id(&t, "▁hello"), id(&t, "▁w"), id(&t, "or"), id(&t, "ld")]
    );
}

#[test]
fn spm_falls_back_to_bytes() {
    let t = spm();
    // 'é' is not a piece: its two UTF-8 bytes become byte tokens.
    let ids = t.encode("hé", false, false).unwrap();
    assert_eq!(
        ids,
        [
            id(&t, "▁h"),
            id(&t, &byte_token(0xC3)),
            id(&t, &byte_token(0xA9))
        ]
    );
    assert_eq!(t.decode(&ids, false).unwrap(), "hé");
}

#[test]
fn spm_special_tokens_and_space_after_them() {
    let t = spm();
    // With parse_special, "</s>" is the EOS token and the text after it gets a space prefix.
    let ids = t.encode("hello</s>hello", false, true).unwrap();
    assert_eq!(ids, [id(&t, "▁hello"), 2, id(&t, "▁hello")]);
    // Without, it is plain text.
    let plain = t.encode("</s>", false, false).unwrap();
    assert!(!plain.contains(&2));
    assert_eq!(t.decode(&ids, false).unwrap(), "hello hello");
    assert_eq!(t.decode(&ids, true).unwrap(), "hello</s> hello");
}

#[test]
fn bpe_ranked_merges() {
    let t = bpe();
    assert_eq!(
        t.encode("hello world", false, false).unwrap(),
        [id(&t, "hello"), id(&t, "Ġworld")]
    );
    // Unmerged characters stay byte characters.
    let ids = t.encode("hi!", false, false).unwrap();
    assert_eq!(ids, [id(&t, "h"), id(&t, "i"), id(&t, "!")]);
    assert_eq!(t.decode(&ids, false).unwrap(), "hi!");
}

#[test]
fn bpe_bytes_and_round_trip() {
    let t = bpe();
    for s in ["日本語 🎉", "naïve café", "tabs\tand\nnewlines  ", ""] {
        let ids = t.encode(s, false, false).unwrap();
        // gpt-2 pre-tokenizer cleans " ." etc.; none of these have that.
        assert_eq!(t.decode(&ids, false).unwrap(), s);
    }
}

#[test]
fn bpe_special_partition() {
    let t = bpe();
    let start = id(&t, "<|im_start|>");
    let ids = t.encode("<|im_start|>hello", false, true).unwrap();
    assert_eq!(ids, [start, id(&t, "hello")]);
    let plain = t.encode("<|im_start|>hello", false, false).unwrap();
    assert!(!plain.contains(&start));
    assert_eq!(t.decode(&plain, false).unwrap(), "<|im_start|>hello");
    // Control tokens have no text unless asked for.
    assert_eq!(t.decode(&ids, false).unwrap(), "hello");
    assert_eq!(t.decode(&ids, true).unwrap(), "<|im_start|>hello");
}

#[test]
fn detected_special_tokens_and_eog() {
    let t = bpe();
    let v = t.vocab();
    let eot = id(&t, "<|endoftext|>");
    assert_eq!(v.eot(), Some(eot));
    assert!(v.is_eog(eot));
    // gpt2 defaults: bos = eos = 11, no BOS added.
    assert_eq!(v.bos(), Some(11));
    assert!(!v.add_bos());
    assert!(v.clean_spaces());
}

#[test]
fn clean_up_matches_llama_cpp() {
    let mut s = b"Hello , world ! It 's a ' test ' . I 're".to_vec();
    clean_up_spaces(&mut s);
    assert_eq!(
        String::from_utf8(s).unwrap(),
        "Hello, world! It's a'test '. I're"
    );
}

#[test]
fn unknown_model_type_is_an_error() {
    let mut data = spm_data(&[]);
    data.model = "bert".into();
    let e = Vocab::new(data).unwrap_err();
    assert!(matches!(e, TokenizerError::UnsupportedModel(ref m) if m == "bert"));
    assert!(e.to_string().contains("`bert`"), "{e}");
}

#[test]
fn unknown_pre_tokenizer_is_an_error() {
    let mut data = bpe_data(&[], &[], &[]);
    data.pre = Some("no-such-pre".into());
    let e = Vocab::new(data).unwrap_err();
    assert!(e.to_string().contains("no-such-pre"), "{e}");
}

#[test]
fn malformed_merges_are_an_error() {
    let data = bpe_data(&["h e", "nospace"], &["he"], &[]);
    let e = Vocab::new(data).unwrap_err();
    assert!(
        matches!(e, TokenizerError::Metadata { ref key, .. } if key == "tokenizer.ggml.merges"),
        "{e}"
    );
    let mut data = bpe_data(&[], &[], &[]);
    data.merges = None;
    assert!(Vocab::new(data).is_err(), "gpt2 needs merges");
}

#[test]
fn bad_arrays_are_errors() {
    let mut data = spm_data(&[]);
    data.scores = Some(vec![0.0; 3]);
    assert!(Vocab::new(data).is_err());
    let mut data = spm_data(&[]);
    data.token_types = Some(vec![1; 5]);
    assert!(Vocab::new(data).is_err());
    let mut data = spm_data(&[]);
    data.tokens.push("<s>".into());
    assert!(Vocab::new(data).is_err(), "duplicate token");
    let data = VocabData {
        model: "llama".into(),
        ..Default::default()
    };
    assert!(Vocab::new(data).is_err(), "empty vocabulary");
}

#[test]
fn out_of_range_special_ids_fall_back() {
    let mut data = spm_data(&[]);
    data.bos = Some(1_000_000);
    data.eos = Some(u32::MAX);
    data.eot = Some(7);
    let v = Vocab::new(data).unwrap();
    assert_eq!(v.bos(), Some(1), "default kept");
    assert_eq!(v.eos(), Some(2));
    assert_eq!(v.eot(), Some(7));
}

#[test]
fn out_of_range_ids_are_errors() {
    let t = spm();
    let n = t.vocab().n_tokens() as u32;
    assert!(matches!(
        t.token_to_piece(n, true),
        Err(TokenizerError::TokenOutOfRange { .. })
    ));
    assert!(t.decode(&[5, n + 10], false).is_err());
    assert!(t.decode(&[u32::MAX], true).is_err());
    let mut s = t.stream_decoder(false);
    assert!(s.push(n).is_err());
}

fn header(entries: Vec<(&str, Value)>) -> GgufHeader {
    let mut metadata = Metadata::default();
    for (k, v) in entries {
        metadata.insert(k.to_string(), v);
    }
    GgufHeader {
        version: 3,
        metadata,
        tensors: Vec::new(),
        alignment: 32,
        data_offset: 0,
        data_size: 0,
    }
}

fn strings(v: &[&str]) -> Value {
    Value::Array(Array::String(v.iter().map(|s| s.to_string()).collect()))
}

#[test]
fn from_gguf_reads_metadata() {
    let h = header(vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            strings(&["<unk>", "<s>", "</s>", "▁a"]),
        ),
        (
            "tokenizer.ggml.scores",
            Value::Array(Array::F32(vec![0.0; 4])),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(vec![2, 3, 3, 1])),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.ggml.add_space_prefix", Value::Bool(false)),
    ]);
    let t = Tokenizer::from_gguf(&h).unwrap();
    assert!(!t.vocab().add_bos());
    assert!(!t.vocab().add_space_prefix());
    assert_eq!(t.encode(" a", true, false).unwrap(), [3]);
}

#[test]
fn from_gguf_errors_name_the_key() {
    let no_tokens = header(vec![(
        "tokenizer.ggml.model",
        Value::String("llama".into()),
    )]);
    let e = Vocab::from_gguf(&no_tokens).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");

    let no_model = header(vec![("tokenizer.ggml.tokens", strings(&["a"]))]);
    let e = Vocab::from_gguf(&no_model).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.model"), "{e}");

    let wrong_type = header(vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(Array::U32(vec![1, 2])),
        ),
    ]);
    let e = Vocab::from_gguf(&wrong_type).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");

    let bad_scores = header(vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(&["a", "b"])),
        ("tokenizer.ggml.scores", Value::Array(Array::String(vec![]))),
    ]);
    assert!(Vocab::from_gguf(&bad_scores).is_err());

    let unknown = header(vec![
        ("tokenizer.ggml.model", Value::String("t5".into())),
        ("tokenizer.ggml.tokens", strings(&["a"])),
    ]);
    let e = Vocab::from_gguf(&unknown).unwrap_err();
    assert!(e.to_string().contains("`t5`"), "{e}");
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let t = spm();
    let b = |x: u8| id(&t, &byte_token(x));
    let mut s = t.stream_decoder(false);
    // 日 = E6 97 A5, split over three byte tokens.
    assert_eq!(s.push(id(&t, "▁h")).unwrap(), " h");
    assert_eq!(s.push(b(0xE6)).unwrap(), "");
    assert_eq!(s.pending_len(), 1);
    assert_eq!(s.push(b(0x97)).unwrap(), "");
    assert_eq!(s.push(b(0xA5)).unwrap(), "日");
    // 🎉 = F0 9F 8E 89
    let mut got = String::new();
    for x in [0xF0, 0x9F, 0x8E, 0x89] {
        got.push_str(&s.push(b(x)).unwrap());
        if x != 0x89 {
            assert_eq!(got, "");
        }
    }
    assert_eq!(got, "🎉");
    assert_eq!(s.finish(), "");
}

#[test]
fn stream_decoder_replaces_invalid_bytes_once_proven() {
    let t = spm();
    let b = |x: u8| id(&t, &byte_token(x));
    let mut s = t.stream_decoder(false);
    // A lone continuation byte is invalid at once.
    assert_eq!(s.push(b(0x97)).unwrap(), "\u{FFFD}");
    // A lead byte followed by ASCII: invalid only when the ASCII arrives.
    assert_eq!(s.push(b(0xE6)).unwrap(), "");
    assert_eq!(s.push(id(&t, "o")).unwrap(), "\u{FFFD}o");
    // E6 97 then end of stream.
    assert_eq!(s.push(b(0xE6)).unwrap(), "");
    assert_eq!(s.push(b(0x97)).unwrap(), "");
    assert_eq!(s.finish(), "\u{FFFD}");
    assert_eq!(s.pending_len(), 0);
}

#[test]
fn stream_decoder_bpe_byte_characters() {
    let t = bpe();
    let ids = t.encode("é日🎉x", false, false).unwrap();
    assert!(ids.len() > 4, "unmerged: one token per byte");
    let mut s = t.stream_decoder(false);
    let mut parts = Vec::new();
    for &i in &ids {
        parts.push(s.push(i).unwrap());
    }
    parts.push(s.finish());
    assert_eq!(parts.concat(), "é日🎉x");
    assert!(parts.iter().all(|p| p.chars().all(|c| c != '\u{FFFD}')));
    // No part ends inside a character, and the first character needs two tokens.
    assert_eq!(parts[0], "");
    assert_eq!(parts[1], "é");
}

#[test]
fn no_input_panics() {
    let inputs = [
        "",
        " ",
        "\0",
        "\u{FFFD}\u{FFFF}\u{10FFFF}",
        "<|im_start|><|im_start|>",
        "</s></s>",
        "<0x41>",
        "\r\n\r\n\t \u{3000}\u{85}",
        "'s'S'Ll 123456789 ¹²³ Ⅻ",
        "a\u{0301}\u{0301}\u{0301}",
    ];
    for t in [spm(), bpe()] {
        for s in inputs {
            for (a, p) in [(false, false), (true, true), (true, false), (false, true)] {
                let ids = t.encode(s, a, p).unwrap();
                let _ = t.decode(&ids, p).unwrap();
            }
        }
    }
    // Every pre-tokenizer, on every input.
    for pre in [
        "default",
        "llama-bpe",
        "qwen2",
        "qwen35",
        "smollm",
        "deepseek-llm",
        "deepseek-coder",
        "deepseek-v3",
        "falcon",
        "gpt-4o",
        "tekken",
        "poro-chat",
        "viking",
        "chameleon",
        "tiny_aya",
        "afmoe",
        "laguna",
        "exaone-moe",
        "youtu",
        "minicpm5",
        "jais-2",
        "bailingmoe",
    ] {
        let mut data = bpe_data(&["h e"], &["he"], &[]);
        data.pre = Some(pre.into());
        let t = Tokenizer::new(Vocab::new(data).unwrap()).unwrap();
        for s in inputs {
            let ids = t.encode(s, false, true).unwrap();
            assert_eq!(
                t.decode(&ids, true).unwrap().is_empty(),
                s.is_empty(),
                "{pre} {s:?}"
            );
        }
    }
}

#[test]
fn merges_through_strings_that_are_not_tokens() {
    // "ab" is no token, but "ab c" merges into the token "abc" (llama.cpp ranks merges by text).
    let data = bpe_data(&["a b", "ab c"], &["abc"], &[]);
    let t = Tokenizer::new(Vocab::new(data).unwrap()).unwrap();
    assert_eq!(t.encode("abc", false, false).unwrap(), [id(&t, "abc")]);
    // "ab" alone stays two byte tokens: the merged text has no id.
    assert_eq!(
        t.encode("ab", false, false).unwrap(),
        [id(&t, "a"), id(&t, "b")]
    );
}

#[test]
fn first_merge_of_a_pair_wins() {
    let data = bpe_data(&["h e", "l l", "h e"], &["he", "ll"], &[]);
    let v = Vocab::new(data).unwrap();
    let (h, e) = (v.token_id("h").unwrap(), v.token_id("e").unwrap());
    assert_eq!(v.merges[&(h, e)].0, 0);
}

#[test]
fn phi3_special_tokens_strip_spaces_on_the_right() {
    let mut data = bpe_data(&[], &[], &["<|end|>", "<|endoftext|>"]);
    data.model_name = Some("Phi-3 Mini".into());
    let t = Tokenizer::new(Vocab::new(data).unwrap()).unwrap();
    let end = id(&t, "<|end|>");
    let ids = t.encode("x<|end|>   y", false, true).unwrap();
    assert_eq!(ids, [id(&t, "x"), end, id(&t, "y")]);
    // <|endoftext|> keeps the spaces.
    let eot = id(&t, "<|endoftext|>");
    let ids = t.encode("x<|endoftext|> y", false, true).unwrap();
    assert_eq!(ids, [id(&t, "x"), eot, id(&t, "Ġ"), id(&t, "y")]);
}

#[test]
fn eot_detection_follows_libstdcxx_map_order() {
    // Both are EOT candidates; llama.cpp keeps whichever its unordered_map visits first.
    let data = bpe_data(&[], &[], &["<|endoftext|>", "<|im_end|>"]);
    let v = Vocab::new(data).unwrap();
    let ids = [
        v.token_id("<|endoftext|>").unwrap(),
        v.token_id("<|im_end|>").unwrap(),
    ];
    let order = stdhash::iteration_order(v.texts.iter().map(|t| t.as_bytes()));
    let first = *order.iter().find(|i| ids.contains(i)).unwrap();
    assert_eq!(v.eot(), Some(first));
    assert!(v.is_eog(ids[0]) && v.is_eog(ids[1]));
}

#[test]
fn tokenizer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<Vocab>();
}
