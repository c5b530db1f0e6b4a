//! Model description + weight loading from a parsed header, over a small byte budget (the
//! input is the whole file; libFuzzer's -max_len bounds it): Config::from_header, the CPU load
//! and two generated tokens must end in a model or a typed error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wasm_chord::engine::{Control, Engine, GenerateOptions, LoadOptions};

fuzz_target!(|data: &[u8]| {
    let bytes = data.to_vec();
    let Ok(mut e) = Engine::load(&bytes, &LoadOptions::default()) else {
        return;
    };
    let cfg = e.config();
    // Bound the forward pass's work: a crafted header may describe a big (valid) model.
    let work = cfg
        .n_layer
        .saturating_mul(cfg.n_embd)
        .saturating_mul(cfg.n_ff.max(cfg.n_embd));
    if work > 1 << 22 {
        return;
    }
    let Ok(ids) = e.tokenize("a b", true, false) else {
        return;
    };
    if ids.is_empty() {
        return;
    }
    let opts = GenerateOptions {
        max_tokens: 2,
        stop_at_eog: false,
        n_ctx: Some(ids.len() + 2),
        ..Default::default()
    };
    let _ = e.generate(&ids, &opts, &mut |_| Control::Continue);
});
