//! The engine end to end on real models: chat prompts rendered and tokenized exactly as
//! llama.cpp does (the prompt ids in tests/goldens/forward), streaming generation, stop strings,
//! cancellation and clear errors.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use serde_json::Value as Json;
use wasm_chord::chat::{messages_from_value, ChatTemplate, RenderOptions};
use wasm_chord::engine::{Control, Engine, FinishReason, GenerateOptions, LoadOptions};
use wasm_chord::sampling::SamplerConfig;
use wasm_chord::source::FileSource;

fn engine(model: &str) -> Engine {
    let src = FileSource::open(common::model_path(model)).unwrap();
    Engine::load(&src, &LoadOptions::default()).unwrap()
}

fn golden(model: &str) -> Json {
    let p = common::root()
        .join("tests/goldens/forward")
        .join(model.replace(".gguf", ".json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Every chat golden's prompt ids come out of our template + tokenizer unchanged.
#[test]
fn chat_prompt_ids_equal_llama_cpp() {
    let mut checked = 0;
    for model in common::TEST_MODELS {
        let e = engine(model);
        let g = golden(model);
        for case in g["cases"].as_array().unwrap() {
            if case["kind"] != "chat" {
                continue;
            }
            let msgs = messages_from_value(&case["messages"]).unwrap();
            let want = ids(&case["prompt_ids"]);
            let got = match case["template_file"].as_str() {
                None => e.chat_prompt_ids(&msgs, &RenderOptions::default()).unwrap(),
                Some(file) => {
                    let v = e.tokenizer.vocab();
                    let text =
                        |id: Option<u32>| id.and_then(|i| v.token_text(i)).unwrap_or("").to_owned();
                    let src = std::fs::read_to_string(common::root().join(file)).unwrap();
                    let t = ChatTemplate::new(&src, &text(v.bos()), &text(v.eos())).unwrap();
                    let p = t
                        .render_prompt(&msgs, &RenderOptions::default(), v.add_bos(), v.add_eos())
                        .unwrap();
                    assert_eq!(p, case["rendered_prompt"].as_str().unwrap(), "{model}");
                    e.tokenize(&p, true, true).unwrap()
                }
            };
            assert_eq!(got, want, "{model} {}", case["name"]);
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} chat prompts checked");
}

/// Greedy generation through the engine streams the reference's tokens, text that adds up, and
/// stops at the end-of-generation token.
#[test]
fn greedy_generation_streams_reference_tokens() {
    let model = "smollm2-135m-instruct-q4_k_m.gguf";
    let mut e = engine(model);
    let g = golden(model);
    let case = g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "chat0")
        .unwrap();
    let prompt = ids(&case["prompt_ids"]);
    let want = ids(&case["greedy_ids"]);
    let mut streamed = String::new();
    let mut events = 0;
    let out = e
        .generate(
            &prompt,
            &GenerateOptions {
                max_tokens: 32,
                ..Default::default()
            },
            &mut |ev| {
                streamed.push_str(ev.text);
                events += 1;
                Control::Continue
            },
        )
        .unwrap();
    let eog = want.iter().position(|&t| e.tokenizer.vocab().is_eog(t));
    let n = eog.map_or(want.len(), |i| i + 1);
    assert_eq!(
        out.ids[..n.min(out.ids.len())],
        want[..n.min(out.ids.len())]
    );
    if eog.is_some() {
        assert_eq!(out.finish, FinishReason::Eog);
        assert_eq!(out.ids.len(), n);
    }
    assert_eq!(streamed, out.text);
    assert_eq!(events, out.ids.len());
    assert_eq!(
        out.text,
        e.tokenizer
            .decode(&out.ids[..out.ids.len() - 1], false)
            .unwrap()
    );
    assert!(out.text.contains("France"), "{}", out.text);
}

#[test]
fn stop_strings_cancellation_and_seeded_sampling() {
    let mut e = engine("smollm2-135m-instruct-q4_k_m.gguf");
    let prompt = e.tokenize("The capital of France is", true, false).unwrap();
    // Greedy continuation is " Paris.\n\nThe answer is: ..."; stop at the first full stop.
    let out = e
        .generate(
            &prompt,
            &GenerateOptions {
                max_tokens: 16,
                stop: vec![".".into()],
                ..Default::default()
            },
            &mut |_| Control::Continue,
        )
        .unwrap();
    assert_eq!(out.text, " Paris");
    assert_eq!(out.finish, FinishReason::StopString(".".into()));

    let mut n = 0;
    let out = e
        .generate(&prompt, &GenerateOptions::default(), &mut |_| {
            n += 1;
            if n == 3 {
                Control::Stop
            } else {
                Control::Continue
            }
        })
        .unwrap();
    assert_eq!(out.finish, FinishReason::Cancelled);
    assert_eq!(out.ids.len(), 3);

    let mut sampled = |seed| {
        let opts = GenerateOptions {
            max_tokens: 12,
            stop_at_eog: false,
            sampler: SamplerConfig {
                temperature: 1.0,
                top_p: 0.95,
                seed,
                ..Default::default()
            },
            ..Default::default()
        };
        e.generate(&prompt, &opts, &mut |_| Control::Continue)
            .unwrap()
            .ids
    };
    assert_eq!(sampled(11), sampled(11));
    assert_ne!(sampled(11), sampled(12));
}

#[test]
fn prompt_longer_than_context_and_missing_template_are_clear_errors() {
    let mut e = engine("tiny-random-llama-q4_k_m.gguf");
    let long: Vec<u32> = (0..300).map(|i| 3 + i % 500).collect();
    let err = e
        .generate(
            &long,
            &GenerateOptions {
                n_ctx: Some(256),
                ..Default::default()
            },
            &mut |_| Control::Continue,
        )
        .unwrap_err();
    assert_eq!(err.code(), "context_full");
    assert!(err.to_string().contains("256"), "{err}");
    let err = e
        .generate(&[], &GenerateOptions::default(), &mut |_| Control::Continue)
        .unwrap_err();
    assert!(err.to_string().contains("prompt is empty"), "{err}");
    let err = e.chat_template().unwrap_err();
    assert_eq!(err.code(), "chat_template");
    assert!(
        err.to_string().to_lowercase().contains("no chat template"),
        "{err}"
    );
}
