//! Structured output on real models: JSON schemas, `json_object`, Lark grammars and forced tool
//! calls, on the CPU; and the GPU's masked sampling on a tiny random model (lavapipe:
//! `WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`). Every
//! output is checked by an independent validator, the `jsonschema` PyPI package
//! (tests/tools/validate_json.py), greedy and with temperature > 0.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::tools::{validate, weather_tools};

use serde_json::{json, Value as Json};
use wasm_chord::chat::tools::{ToolChoice, Tools};
use wasm_chord::chat::{ChatMessage, JsonValue, RenderOptions};
use wasm_chord::constrain::Grammar;
use wasm_chord::engine::{Backend, Control, Engine, FinishReason, GenerateOptions, LoadOptions};
use wasm_chord::sampling::SamplerConfig;
use wasm_chord::source::FileSource;

const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
const SMOLLM: &str = "smollm2-135m-instruct-q4_k_m.gguf";

fn engine(model: &str, backend: Backend) -> Engine {
    let src = FileSource::open(common::model_path(model)).unwrap();
    let opts = LoadOptions {
        backend,
        n_ctx: Some(1024),
        ..Default::default()
    };
    match Engine::load(&src, &opts) {
        Ok(e) => e,
        Err(e) => panic!(
            "{e}\nThe GPU tests need a WebGPU adapter: install `mesa-vulkan-drivers` and set \
             WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
        ),
    }
}

/// (what to ask for, its schema): nested objects, arrays, enums, numbers, optional fields,
/// strings with patterns, `$ref`.
fn schemas() -> Vec<(&'static str, Json)> {
    vec![
        (
            "A fictional person with a name and an address (city and 5-digit zip code), as JSON.",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 24},
                    "address": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "minLength": 1, "maxLength": 24},
                            "zip": {"type": "string", "pattern": "^[0-9]{5}$"}
                        },
                        "required": ["city", "zip"],
                        "additionalProperties": false
                    }
                },
                "required": ["name", "address"],
                "additionalProperties": false
            }),
        ),
        (
            "Three fruits and how many of each, as JSON.",
            json!({
                "type": "object",
                "properties": {
                    "fruits": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "fruit": {"type": "string", "maxLength": 16},
                                "count": {"type": "integer", "minimum": 1, "maximum": 99}
                            },
                            "required": ["fruit", "count"],
                            "additionalProperties": false
                        },
                        "minItems": 1,
                        "maxItems": 3
                    }
                },
                "required": ["fruits"],
                "additionalProperties": false
            }),
        ),
        (
            "Pick a color and a T-shirt size, as JSON.",
            json!({
                "type": "object",
                "properties": {
                    "color": {"enum": ["red", "green", "blue"]},
                    "size": {"type": "string", "enum": ["S", "M", "L", "XL"]},
                    "in_stock": {"type": "boolean"}
                },
                "required": ["color", "size", "in_stock"],
                "additionalProperties": false
            }),
        ),
        (
            "The age of a person, a test score between 0 and 1 with two decimals (like 0.75), and a weight in kg, as JSON.",
            json!({
                "type": "object",
                "properties": {
                    "age": {"type": "integer", "minimum": 0, "maximum": 120},
                    "score": {"type": "number", "minimum": 0, "maximum": 1},
                    "weight_kg": {"type": "number", "exclusiveMinimum": 0, "maximum": 500}
                },
                "required": ["age", "score", "weight_kg"],
                "additionalProperties": false
            }),
        ),
        (
            "A book with a title, maybe a subtitle and a page count, as JSON.",
            json!({
                "type": "object",
                "properties": {
                    "title": {"type": "string", "minLength": 1, "maxLength": 32},
                    "subtitle": {"type": "string", "maxLength": 32},
                    "pages": {"type": "integer", "minimum": 1, "maximum": 5000}
                },
                "required": ["title"],
                "additionalProperties": false
            }),
        ),
        (
            "A product code like ABC-123, a hex color like #a1b2c3, and a list of two related codes, as JSON.",
            json!({
                "$defs": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}},
                "type": "object",
                "properties": {
                    "code": {"$ref": "#/$defs/code"},
                    "color": {"type": "string", "pattern": "^#[0-9a-f]{6}$"},
                    "related": {"type": "array", "items": {"$ref": "#/$defs/code"}, "minItems": 2, "maxItems": 2}
                },
                "required": ["code", "color", "related"],
                "additionalProperties": false
            }),
        ),
    ]
}

fn sampler(temperature: f32, seed: u64) -> SamplerConfig {
    SamplerConfig {
        temperature,
        top_p: 0.95,
        seed,
        ..Default::default()
    }
}

/// Generates under `grammar` for a one-message chat; returns the text (checks it ended on its
/// own, not at the token limit).
fn generate(e: &mut Engine, ask: &str, grammar: Grammar, s: SamplerConfig) -> String {
    let ids = e
        .chat_prompt_ids(&[ChatMessage::user(ask)], &RenderOptions::default())
        .unwrap();
    let opts = GenerateOptions {
        max_tokens: 200,
        sampler: s,
        grammar: Some(grammar),
        ..Default::default()
    };
    let mut streamed = String::new();
    let g = e
        .generate(&ids, &opts, &mut |ev| {
            streamed.push_str(ev.text);
            Control::Continue
        })
        .unwrap();
    assert_eq!(g.text, streamed);
    assert_eq!(g.finish, FinishReason::Eog, "{ask}: output cut: {}", g.text);
    g.text
}

/// Every schema, greedy and at temperature 0.9 with `seeds`: all outputs validate.
fn check_schemas(model: &str, backend: Backend, seeds: &[u64], which: &[usize]) {
    let mut e = engine(model, backend);
    let mut cases = Vec::new();
    let all = schemas();
    for &i in which {
        let (ask, schema) = &all[i];
        let mut runs = vec![sampler(0.0, 0)];
        runs.extend(seeds.iter().map(|&s| sampler(0.9, s)));
        for s in runs {
            let text = generate(&mut e, ask, Grammar::JsonSchema(schema.clone()), s);
            eprintln!("{model} {backend:?} schema {i}: {text}");
            cases.push((schema.clone(), text));
        }
    }
    let verdicts = validate(&cases);
    for ((schema, text), v) in cases.iter().zip(&verdicts) {
        assert!(
            v.is_ok(),
            "{model} {backend:?}: {text}\n{v:?}\nschema {schema}"
        );
    }
}

#[test]
fn qwen_outputs_validate_on_the_cpu() {
    check_schemas(QWEN, Backend::Cpu, &[1], &[0, 1, 2, 3, 4, 5]);
}

#[test]
fn smollm2_outputs_validate_on_the_cpu() {
    check_schemas(SMOLLM, Backend::Cpu, &[1, 2, 3], &[0, 1, 2, 3, 4, 5]);
}

/// The GPU applies the CPU's masks (`token_mask.wgsl`) and samples under them, greedy and at
/// temperature 0.9. Applying a mask does not depend on the model, and lavapipe runs SmolLM2 at
/// a few tokens a second, so this runs on the tiny random llama with a chat template
/// (`common::tiny_chat`), with the schemas whose every string and array is bounded (noise
/// fills them up to their limits; whitespace is not free, so each output ends). Qwen's schemas
/// and tool calls, and SmolLM2's, run on the CPU above and below, where the masks are computed.
#[test]
fn tiny_outputs_validate_on_the_gpu() {
    check_schemas(&common::tiny_chat(), Backend::Gpu, &[1], &[0, 1, 2, 5]);
}

/// The GPU applies the mask itself (greedy steps read back 4 bytes): its greedy constrained
/// output equals the CPU's, token for token.
#[test]
fn constrained_greedy_is_the_same_on_cpu_and_gpu() {
    let mut cpu = engine(&common::tiny_chat(), Backend::Cpu);
    let mut gpu = engine(&common::tiny_chat(), Backend::Gpu);
    for (ask, schema) in &schemas()[..3] {
        let g = || Grammar::JsonSchema(schema.clone());
        let a = generate(&mut cpu, ask, g(), sampler(0.0, 0));
        let b = generate(&mut gpu, ask, g(), sampler(0.0, 0));
        assert_eq!(a, b);
    }
}

#[test]
fn json_object_always_parses() {
    let mut e = engine(SMOLLM, Backend::Cpu);
    let mut cases = Vec::new();
    // Unbounded strings can run to the token limit at a high temperature on a 135M model (the
    // reply is then cut, `finish_reason: length`): greedy and a moderate temperature here; the
    // bounded schemas above cover temperature 0.9.
    for seed in [0, 5] {
        let t = if seed == 0 { 0.0 } else { 0.5 };
        // A prompt that names the keys: with a free-form one ("Describe a cat as JSON.") this
        // 135M model repeats a key string to the token limit, which json_object cannot bound.
        let text = generate(
            &mut e,
            "Give a JSON object for a cat named Tom who is 3 years old, with the keys \"name\" and \"age\".",
            Grammar::JsonObject,
            sampler(t, seed),
        );
        cases.push((json!({"type": "object"}), text));
    }
    for (v, (_, text)) in validate(&cases).iter().zip(&cases) {
        assert!(v.is_ok(), "{text}: {v:?}");
    }
}

#[test]
fn lark_grammars_and_regexes_are_followed() {
    let mut e = engine(SMOLLM, Backend::Cpu);
    let lark = "start: answer \".\"\nanswer: \"yes\" | \"no\" | \"maybe\"\n";
    for seed in [0, 1, 2] {
        let t = generate(
            &mut e,
            "Is the sky blue?",
            Grammar::Lark(lark.into()),
            sampler(if seed == 0 { 0.0 } else { 1.2 }, seed),
        );
        assert!(["yes.", "no.", "maybe."].contains(&t.as_str()), "{t:?}");
    }
    let t = generate(
        &mut e,
        "What year did the Berlin wall fall?",
        Grammar::Regex("[0-9]{4}".into()),
        sampler(0.0, 0),
    );
    assert!(
        t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()),
        "{t:?}"
    );
}

/// Unsupported schema keywords and bad grammars are errors before any token is generated.
#[test]
fn unusable_constraints_fail_before_generation() {
    let mut e = engine(SMOLLM, Backend::Cpu);
    let ids = e.tokenize("Hello", true, false).unwrap();
    let bad = [
        (
            Grammar::JsonSchema(json!({"type": "array", "uniqueItems": true})),
            "uniqueItems",
        ),
        (Grammar::JsonSchema(json!({"type": "nonsense"})), "nonsense"),
        (Grammar::JsonSchema(json!([1, 2])), "must be an object"),
        (Grammar::Lark("start: foo".into()), "foo"),
        (Grammar::Lark("   ".into()), "empty"),
    ];
    for (g, what) in bad {
        let opts = GenerateOptions {
            grammar: Some(g.clone()),
            ..Default::default()
        };
        let mut called = false;
        let err = e
            .generate(&ids, &opts, &mut |_| {
                called = true;
                Control::Continue
            })
            .unwrap_err();
        assert!(!called, "{g:?}: tokens were generated");
        assert_eq!(err.code(), "bad_grammar", "{err}");
        assert!(err.to_string().contains(what), "{g:?}: {err}");
    }
}

#[test]
fn response_format_is_read_like_openai() {
    let schema = json!({"type": "object"});
    let g = |rf: Json| Grammar::from_request(Some(&rf), None);
    assert_eq!(g(json!({"type": "text"})).unwrap(), None);
    assert_eq!(
        g(json!({"type": "json_object"})).unwrap(),
        Some(Grammar::JsonObject)
    );
    assert_eq!(
        g(json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}))
            .unwrap(),
        Some(Grammar::JsonSchema(schema.clone()))
    );
    for (rf, what) in [
        (json!({"type": "xml"}), "xml"),
        (json!({"type": "json_schema"}), "json_schema"),
        (
            json!({"type": "json_schema", "json_schema": {"name": "x"}}),
            "schema",
        ),
    ] {
        let err = g(rf).unwrap_err();
        assert_eq!(err.code(), "invalid");
        assert!(err.to_string().contains(what), "{err}");
    }
    let lark = json!("start: \"a\"");
    assert_eq!(
        Grammar::from_request(None, Some(&lark)).unwrap(),
        Some(Grammar::Lark("start: \"a\"".into()))
    );
    assert!(Grammar::from_request(Some(&json!({"type": "json_object"})), Some(&lark)).is_err());
}

/// Qwen2.5 renders the tools with its own template; `required` and a named choice force a call
/// whose arguments validate; the result goes back as a `tool` message and the model answers.
/// (On the CPU: the GPU's part of constrained decoding, applying the mask, is tested on the tiny
/// chat model above.)
#[test]
fn forced_tool_calls_validate_and_round_trip_on_the_cpu() {
    let named = json!({"type": "function", "function": {"name": "get_time"}});
    // tool_choice, temperature, seed
    let runs = [
        (json!("required"), 0.0, 0),
        (json!("required"), 0.9, 3),
        (named, 0.9, 4),
    ];
    let mut e = engine(QWEN, Backend::Cpu);
    let tools_json = weather_tools();
    let source = e.chat_template().unwrap().source().to_string();
    let mut cases = Vec::new();
    for (choice, temp, seed) in runs {
        let tools = Tools::from_request(Some(&tools_json), Some(&choice), &source)
            .unwrap()
            .unwrap();
        let msgs = vec![ChatMessage::user("What's the weather in Paris right now?")];
        let render = RenderOptions {
            tools: tools.template_tools(),
            ..Default::default()
        };
        let prompt = e.render_chat(&msgs, &render).unwrap();
        assert!(prompt.contains("\"name\": \"get_weather\""), "{prompt}");
        let ids = e.tokenize(&prompt, true, true).unwrap();
        let opts = GenerateOptions {
            max_tokens: 120,
            sampler: sampler(temp, seed),
            grammar: tools.grammar(),
            ..Default::default()
        };
        let g = e.generate(&ids, &opts, &mut |_| Control::Continue).unwrap();
        assert_eq!(g.finish, FinishReason::Eog, "cut: {}", g.text);
        let reply = tools.parse(&g.text);
        assert_eq!(reply.tool_calls.len(), 1, "{}", g.text);
        let call = &reply.tool_calls[0];
        if let ToolChoice::Function(name) = &tools.choice {
            assert_eq!(&call.name, name);
        }
        let f = tools
            .functions()
            .iter()
            .find(|f| f.name == call.name)
            .unwrap();
        cases.push((f.parameters.clone(), call.arguments.clone()));

        // Step two: the call and its result go back through the template; the model answers
        // in text (tool_choice auto, no grammar).
        let assistant = serde_json::from_value::<JsonValue>(json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [call.to_json()],
        }))
        .unwrap();
        let mut msgs2 = msgs.clone();
        msgs2.push(ChatMessage::from_value(&assistant.0).unwrap());
        let mut tool_msg = ChatMessage::new("tool", "{\"temperature\": 21, \"sky\": \"sunny\"}");
        tool_msg.tool_call_id = Some(call.id.clone());
        msgs2.push(tool_msg);
        let auto = Tools::from_request(Some(&tools_json), None, &source)
            .unwrap()
            .unwrap();
        let render2 = RenderOptions {
            tools: auto.template_tools(),
            ..Default::default()
        };
        let prompt2 = e.render_chat(&msgs2, &render2).unwrap();
        assert!(
            prompt2.contains("<tool_response>\n{\"temperature\": 21"),
            "{prompt2}"
        );
        // arguments given as JSON text reach the template as an object (tojson spacing)
        assert!(
            prompt2.contains(&format!("\"name\": \"{}\", \"arguments\": {{", call.name)),
            "{prompt2}"
        );
        let ids2 = e.tokenize(&prompt2, true, true).unwrap();
        let g2 = e
            .generate(
                &ids2,
                &GenerateOptions {
                    max_tokens: 40,
                    ..Default::default()
                },
                &mut |_| Control::Continue,
            )
            .unwrap();
        let answer = auto.parse(&g2.text);
        assert!(
            answer.tool_calls.is_empty()
                && answer
                    .content
                    .as_deref()
                    .is_some_and(|c| !c.trim().is_empty()),
            "{:?}",
            g2.text
        );
    }
    for ((schema, args), v) in cases.iter().zip(validate(&cases)) {
        assert!(v.is_ok(), "{args} against {schema}: {v:?}");
    }
}

#[test]
fn tools_on_a_template_without_tools_are_an_error() {
    let e = engine(SMOLLM, Backend::Cpu);
    let source = e.chat_template().unwrap().source().to_string();
    let err = Tools::from_request(Some(&weather_tools()), None, &source).unwrap_err();
    assert_eq!(err.code(), "invalid");
    assert!(err.to_string().contains("does not render tools"), "{err}");
}
