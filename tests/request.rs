//! The chat request at the wasm boundary (`wasm_chord::request::parse_chat`): every bad field is
//! an `invalid` error naming it; good requests parse to the options asked for.

use wasm_chord::conversation::Overflow;
use wasm_chord::request::parse_chat;

const HI: &str = r#"[{"role":"user","content":"hi"}]"#;

fn rejects(messages: &str, options: &str, field: &str) {
    let e = parse_chat(messages, options).expect_err(options);
    assert_eq!(e.code(), "invalid", "{e}");
    assert!(
        e.to_string().contains(field),
        "`{e}` does not name `{field}`"
    );
}

#[test]
fn bad_options_name_the_field() {
    for (opts, field) in [
        (r#"{"max_tokens":0}"#, "max_tokens"),
        (r#"{"max_tokens":1e300}"#, "max_tokens"),
        (r#"{"max_tokens":2.5}"#, "max_tokens"),
        (r#"{"n_ctx":1099511627776}"#, "n_ctx"),
        (r#"{"temperature":-0.1}"#, "temperature"),
        (r#"{"temperature":"hot"}"#, "temperature"),
        (r#"{"top_p":1.5}"#, "top_p"),
        (r#"{"top_k":-1}"#, "top_k"),
        (r#"{"min_p":2}"#, "min_p"),
        (r#"{"repeat_penalty":0}"#, "repeat_penalty"),
        (r#"{"presence_penalty":3}"#, "presence_penalty"),
        (r#"{"frequency_penalty":-3}"#, "frequency_penalty"),
        (r#"{"seed":-1}"#, "seed"),
        (r#"{"seed":1e20}"#, "seed"),
        (r#"{"stop":[1]}"#, "stop[0]"),
        (r#"{"stop":""}"#, "stop"),
        (r#"{"stop":{}}"#, "stop"),
        (r#"{"cache_prompt":"no"}"#, "cache_prompt"),
        (r#"{"context_overflow":"shift"}"#, "context_overflow"),
        (r#"{"context_overflow":1}"#, "context_overflow"),
        (r#"[1]"#, "options"),
        ("{", "options"),
    ] {
        rejects(HI, opts, field);
    }
}

#[test]
fn bad_messages_name_the_message() {
    rejects("[]", "", "messages");
    rejects("{}", "", "messages");
    rejects(r#"["hi"]"#, "", "messages[0]");
    rejects(r#"[{"content":"x"}]"#, "", "messages[0].role");
    rejects(r#"[{"role":7,"content":"x"}]"#, "", "messages[0].role");
    rejects("not json", "", "messages");
}

#[test]
fn good_requests_parse() {
    let r = parse_chat(
        HI,
        r#"{"max_tokens":8,"temperature":0.5,"top_k":40,"top_p":0.9,"seed":7,"stop":["\n","END"],"n_ctx":128}"#,
    )
    .unwrap();
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.options.max_tokens, 8);
    assert_eq!(r.options.sampler.top_k, 40);
    assert_eq!(r.options.sampler.seed, 7);
    assert_eq!(r.options.stop, ["\n", "END"]);
    assert_eq!(r.options.n_ctx, Some(128));
    let d = parse_chat(HI, "").unwrap();
    assert_eq!(d.options.max_tokens, 256);
    assert!(d.cache_prompt);
    assert_eq!(d.overflow, Overflow::DropOldest);
    let c = parse_chat(HI, r#"{"cache_prompt":false,"context_overflow":"error"}"#).unwrap();
    assert!(!c.cache_prompt);
    assert_eq!(c.overflow, Overflow::Error);
}
