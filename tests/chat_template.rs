//! Chat templates: parity with llama.cpp's rendering (`llama-ref chat`, i.e. llama-server with
//! `--jinja`) on the goldens in tests/goldens/chat/ (made by scripts/gen-chat-goldens), for every
//! test model with a template, Gemma-3 with an explicit template file, and a template that
//! exercises the Jinja features and Python methods templates use.
//!
//! The template and the BOS/EOS texts are read from the model file with our GGUF reader
//! (`ChatTemplate::from_gguf`) and checked against the golden's (`chat_template` from the `gguf`
//! Python package, BOS/EOS texts from llama.cpp); add_bos/add_eos are llama.cpp's, from the
//! golden.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::PathBuf;

use wasm_chord::chat::{
    messages_from_value, special_token_texts, ChatDate, ChatMessage, ChatTemplate, JsonValue,
    RenderOptions, TemplateError, Value,
};
use wasm_chord::gguf::read_header_from_path;

fn goldens_dir() -> PathBuf {
    common::root().join("tests/goldens/chat")
}

/// A golden file, parsed with object keys kept in file order (as llama.cpp read them).
fn load(name: &str) -> Value {
    let path = goldens_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with scripts/gen-chat-goldens)",
            path.display()
        )
    });
    serde_json::from_str::<JsonValue>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .0
}

fn get(v: &Value, key: &str) -> Value {
    v.get_attr(key).unwrap_or_default()
}

fn string(v: &Value, key: &str) -> Option<String> {
    get(v, key).as_str().map(str::to_string)
}

fn flag(v: &Value, key: &str) -> bool {
    get(v, key).is_true()
}

fn options(golden: &Value) -> RenderOptions {
    let mut opts = RenderOptions {
        // the kwargs pin datetime/date_string; strftime_now gets this date
        now: ChatDate::new(2024, 7, 26),
        ..RenderOptions::default()
    };
    let kwargs = get(golden, "kwargs");
    if !kwargs.is_undefined() && !kwargs.is_none() {
        opts.set_kwargs_from_value(&kwargs).unwrap();
    }
    if let Some(agp) = get(golden, "add_generation_prompt").as_str() {
        panic!("add_generation_prompt must be a bool, got {agp}");
    }
    opts
}

/// The template a golden was rendered with: its template file, or the model's own template read
/// from the GGUF (which must equal the golden's copy). BOS/EOS texts come from the model too.
fn template_of(golden: &Value) -> ChatTemplate {
    let model = string(golden, "model").unwrap();
    let header = read_header_from_path(common::model_path(&model))
        .unwrap_or_else(|e| panic!("{model}: {e}"));
    let (bos, eos) = special_token_texts(&header.metadata).unwrap();
    assert_eq!(
        Some(&bos),
        string(golden, "bos_token").as_ref(),
        "{model}: BOS text"
    );
    assert_eq!(
        Some(&eos),
        string(golden, "eos_token").as_ref(),
        "{model}: EOS text"
    );
    match string(golden, "template_file") {
        Some(file) => {
            let source = std::fs::read_to_string(goldens_dir().join(&file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            ChatTemplate::new(&source, &bos, &eos)
                .unwrap_or_else(|e| panic!("{file} does not parse: {e}"))
        }
        None => {
            let t = ChatTemplate::from_gguf(&header)
                .unwrap_or_else(|e| panic!("{model}: template does not parse: {e}"));
            assert_eq!(
                Some(t.source()),
                string(golden, "chat_template").as_deref(),
                "{model}: tokenizer.chat_template differs from the golden's copy"
            );
            t
        }
    }
}

/// Renders every case of a golden and compares with llama.cpp's `rendered_prompt` (or expects
/// an error where llama.cpp refused). Returns the number of cases compared.
fn check_golden(name: &str) -> usize {
    check_golden_except(name, &[])
}

/// [`check_golden`] without the cases named in `known`: differences from llama.cpp that are
/// recorded as open bugs (each named where it is passed).
fn check_golden_except(name: &str, known: &[&str]) -> usize {
    let golden = load(name);
    let template = template_of(&golden);
    let opts = options(&golden);
    let (add_bos, add_eos) = (flag(&golden, "add_bos"), flag(&golden, "add_eos"));
    let mut failures = Vec::new();
    let cases: Vec<Value> = get(&golden, "cases").try_iter().unwrap().collect();
    assert!(cases.len() >= 6, "{name}: only {} cases", cases.len());
    for case in &cases {
        let case_name = string(case, "name").unwrap();
        if known.contains(&case_name.as_str()) {
            continue;
        }
        let messages = messages_from_value(&get(case, "messages"))
            .unwrap_or_else(|e| panic!("{name}/{case_name}: {e}"));
        let got = template.render_prompt(&messages, &opts, add_bos, add_eos);
        match (string(case, "rendered_prompt"), string(case, "error"), got) {
            (Some(want), _, Ok(got)) => {
                if got != want {
                    failures.push(format!(
                        "{case_name}: rendered prompt differs from llama.cpp's\n  command: {}\n  want: {want:?}\n  got:  {got:?}",
                        string(case, "command").unwrap_or_default()
                    ));
                }
                let want_sys = get(case, "supports_system_role");
                if !want_sys.is_undefined() {
                    assert_eq!(
                        template.supports_system_role(&opts),
                        want_sys.is_true(),
                        "{name}/{case_name}: supports_system_role"
                    );
                }
            }
            (Some(want), _, Err(e)) => failures.push(format!(
                "{case_name}: failed ({e}) where llama.cpp rendered {want:?}"
            )),
            (None, Some(want_err), Ok(got)) => failures.push(format!(
                "{case_name}: rendered {got:?} where llama.cpp failed: {want_err}"
            )),
            (None, Some(want_err), Err(e)) => {
                // raise_exception messages must match llama.cpp's
                if let TemplateError::Raised(msg) = &e {
                    assert!(
                        want_err.contains(&format!("Jinja Exception: {msg}")),
                        "{name}/{case_name}: raised {msg:?}, llama.cpp: {want_err}"
                    );
                }
            }
            (None, None, _) => {
                panic!("{name}/{case_name}: case has neither rendered_prompt nor error")
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    cases.len()
}

#[test]
fn smollm2_q4_k_m_matches_llama_cpp() {
    check_golden("smollm2-135m-instruct-q4_k_m");
}

#[test]
fn smollm2_q4_1_matches_llama_cpp() {
    check_golden("smollm2-135m-instruct-q4_1");
    // same template as the Q4_K_M file
    assert_eq!(
        string(&load("smollm2-135m-instruct-q4_1"), "chat_template"),
        string(&load("smollm2-135m-instruct-q4_k_m"), "chat_template")
    );
}

#[test]
fn qwen25_coder_matches_llama_cpp() {
    check_golden("qwen2.5-coder-0.5b-instruct-q4_k_m");
}

#[test]
fn gemma3_with_template_file_matches_llama_cpp() {
    let golden = load("gemma-3-270m-q4_k_m");
    // Gemma-3-270m (base) has no template: llama-ref refuses, and so do we
    assert!(get(&golden, "chat_template").is_none());
    let refusal = string(&golden, "no_template_error").unwrap();
    assert!(refusal.contains("no chat template"), "{refusal}");
    let header = read_header_from_path(common::model_path("gemma-3-270m-q4_k_m.gguf")).unwrap();
    let err = ChatTemplate::from_gguf(&header).unwrap_err();
    assert_eq!(err, TemplateError::NoTemplate);
    assert!(err.to_string().contains("no chat template"), "{err}");
    // with an explicit Gemma 3 template: BOS stripped (add_bos), raise_exception on bad roles
    assert!(flag(&golden, "add_bos"));
    check_golden("gemma-3-270m-q4_k_m");
}

/// Gemma 2's template rejects system messages (`raise_exception`): llama.cpp's probe finds no
/// system role, merges the system message into the next one, and drops it when it is alone.
#[test]
fn gemma2_template_without_system_role_matches_llama_cpp() {
    let golden = load("gemma-3-270m-q4_k_m+gemma2");
    let template = template_of(&golden);
    assert!(!template.supports_system_role(&options(&golden)));
    check_golden("gemma-3-270m-q4_k_m+gemma2");
}

#[test]
fn jinja_features_match_llama_cpp() {
    check_golden("smollm2-135m-instruct-q4_k_m+features");
}

/// Qwen2.5's tools branch. llama-ref cannot pass tools, so this golden comes from Python jinja2
/// with transformers' settings; `tojson` there is Python's `json.dumps(ensure_ascii=False)`,
/// which is also llama.cpp's format.
#[test]
fn qwen25_tools_branch_matches_jinja2() {
    let golden = load("qwen2.5-coder-0.5b-instruct-q4_k_m+tools-jinja2");
    let template = template_of(&golden);
    let tools = get(&golden, "tools");
    assert!(tools.len().unwrap() > 0);
    for case in get(&golden, "cases").try_iter().unwrap() {
        let case_name = string(&case, "name").unwrap();
        let messages = messages_from_value(&get(&case, "messages")).unwrap();
        let opts = RenderOptions {
            add_generation_prompt: flag(&case, "add_generation_prompt"),
            tools: Some(tools.clone()),
            ..options(&golden)
        };
        let got = template.render(&messages, &opts).unwrap();
        assert_eq!(
            got,
            string(&case, "rendered_prompt").unwrap(),
            "{case_name} (add_generation_prompt {})",
            opts.add_generation_prompt
        );
        assert!(got.contains("# Tools") && got.contains("\"name\": \"get_weather\""));
        // without tools (none, or an empty list) the same conversation takes the other branch
        for tools in [None, Some(Value::from(Vec::<Value>::new()))] {
            let out = template
                .render(
                    &messages,
                    &RenderOptions {
                        tools,
                        ..opts.clone()
                    },
                )
                .unwrap();
            assert!(!out.contains("# Tools"), "{case_name}: {out}");
        }
    }
}

#[test]
fn add_generation_prompt_false_and_bos_strip() {
    let golden = load("smollm2-135m-instruct-q4_k_m");
    let template = template_of(&golden);
    let messages = [ChatMessage::user("Hi")];
    let with = template.render(&messages, &options(&golden)).unwrap();
    let without = template
        .render(
            &messages,
            &RenderOptions {
                add_generation_prompt: false,
                ..options(&golden)
            },
        )
        .unwrap();
    assert_eq!(format!("{without}<|im_start|>assistant\n"), with);
    // SmolLM2's BOS text is `<|im_start|>`, and the prompt starts with it: stripped only when the
    // tokenizer adds BOS itself (SmolLM2's does not)
    assert!(with.starts_with("<|im_start|>"));
    let stripped = template
        .render_prompt(&messages, &options(&golden), true, false)
        .unwrap();
    assert_eq!(format!("<|im_start|>{stripped}"), with);
    assert_eq!(
        template
            .render_prompt(&messages, &options(&golden), false, false)
            .unwrap(),
        with
    );
}

#[test]
fn chatml_fallback_is_opt_in() {
    let t = ChatTemplate::chatml("<bos>", "<eos>");
    let out = t
        .render(
            &[ChatMessage::new("developer", "D"), ChatMessage::user("U")],
            &RenderOptions::default(),
        )
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nD<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    );
}

/// A template that loops without end is stopped by the fuel limit with an error, not a hang.
#[test]
fn runaway_template_runs_out_of_fuel() {
    use wasm_chord::chat::{ChatMessage, ChatTemplate, RenderOptions};
    let t = ChatTemplate::new(
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        "",
        "",
    )
    .unwrap();
    let start = std::time::Instant::now();
    let e = t
        .render(&[ChatMessage::user("hi")], &RenderOptions::default())
        .unwrap_err();
    assert!(
        start.elapsed().as_secs() < 30,
        "fuel did not stop the render"
    );
    assert!(e.to_string().to_lowercase().contains("fuel"), "{e}");
}

/// The model zoo's families (issue 10): their real chat templates (llama.cpp's
/// models/templates/, see scripts/gen-chat-goldens) render as llama.cpp renders them.
#[test]
fn zoo_family_templates_match_llama_cpp() {
    for name in [
        "qwen2.5-coder-0.5b-instruct-q4_k_m+qwen3",
        "smollm2-135m-instruct-q4_k_m+smollm3",
        "smollm2-135m-instruct-q4_k_m+phi4-mini",
        "smollm2-135m-instruct-q4_k_m+phi3.5-mini",
        // Issue 11's hybrids: LFM2 (its tool-call block uses `tc.get("id")`).
        "smollm2-135m-instruct-q4_k_m+lfm2",
        // Qwen3.5: the vision-aware `render_content` macro, XML tool calls, `<think>` opened by
        // the generation prompt.
        "qwen2.5-coder-0.5b-instruct-q4_k_m+qwen35",
    ] {
        check_golden(name);
    }
    // Its tool-response block needs llama.cpp's `default`, which replaces `none` too:
    // `follow.get('name') | default('unknown')` for a tool message without a name.
    check_golden("gemma-3-270m-q4_k_m+gemma4");
}
