//! The JSON chat request at the wasm boundary (`wasm_chord::request::parse_chat`, what the
//! worker hands `WasmEngine.chatAsync`): messages JSON, a NUL, options JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (messages, options) = text.split_once('\0').unwrap_or((&text, ""));
    if let Ok(r) = wasm_chord::request::parse_chat(messages, options) {
        // Whatever passes is in range.
        assert!(r.options.max_tokens >= 1);
        assert!(r.options.sampler.temperature.is_finite());
        assert!((0.0..=1.0).contains(&r.options.sampler.top_p));
        assert!(!r.messages.is_empty());
    }
});
