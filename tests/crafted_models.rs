//! Crafted models: GGUF files whose header is well formed but whose hyper-parameters or tensor
//! shapes are hostile (zero dimensions, more heads than embedding values, absurd sizes). Loading
//! one must give a typed error naming the field, never a panic (a panic traps the wasm module).
//! A valid tiny model built the same way loads and generates, so the builder itself is checked.

use wasm_chord::engine::{Engine, GenerateOptions, LoadOptions};

/// Little-endian GGUF v3 writer: metadata and F32 tensors.
#[derive(Default)]
struct Gguf {
    kv: Vec<u8>,
    n_kv: u64,
    tensors: Vec<(String, Vec<u64>)>,
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

impl Gguf {
    fn key(&mut self, k: &str, ty: u32) -> &mut Vec<u8> {
        self.n_kv += 1;
        put_str(&mut self.kv, k);
        self.kv.extend_from_slice(&ty.to_le_bytes());
        &mut self.kv
    }
    fn u32(&mut self, k: &str, v: u32) {
        self.key(k, 4).extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, k: &str, v: u64) {
        self.key(k, 10).extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, k: &str, v: f32) {
        self.key(k, 6).extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, k: &str, v: &str) {
        put_str(self.key(k, 8), v);
    }
    fn strings(&mut self, k: &str, v: &[&str]) {
        let b = self.key(k, 9);
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for s in v {
            put_str(b, s);
        }
    }
    fn f32s(&mut self, k: &str, v: &[f32]) {
        let b = self.key(k, 9);
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for x in v {
            b.extend_from_slice(&x.to_le_bytes());
        }
    }
    fn i32s(&mut self, k: &str, v: &[i32]) {
        let b = self.key(k, 9);
        b.extend_from_slice(&5u32.to_le_bytes());
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for x in v {
            b.extend_from_slice(&x.to_le_bytes());
        }
    }
    fn tensor(&mut self, name: &str, dims: &[u64]) {
        self.tensors.push((name.to_owned(), dims.to_vec()));
    }

    /// The file: header, tensor infos, then each F32 tensor (small pseudo-random values),
    /// 32-byte aligned.
    fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.n_kv.to_le_bytes());
        out.extend_from_slice(&self.kv);
        let mut offset = 0u64;
        let mut sizes = vec![];
        for (name, dims) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&0u32.to_le_bytes()); // F32
            out.extend_from_slice(&offset.to_le_bytes());
            let n = dims.iter().product::<u64>() * 4;
            sizes.push(n);
            offset += n.div_ceil(32) * 32;
        }
        let mut seed = 0x9e37_79b9u32;
        for n in sizes {
            while !out.len().is_multiple_of(32) {
                out.push(0);
            }
            for _ in 0..n / 4 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let v = ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.2;
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out
    }
}

const TOKENS: [&str; 8] = ["<unk>", "<s>", "</s>", "▁a", "▁b", "a", "b", "▁"];

/// Header values and tensor shapes of a tiny llama, each overridable.
#[derive(Clone)]
struct Spec {
    n_embd: u64,
    n_head: u64,
    n_head_kv: u64,
    n_layer: u64,
    n_ff: u64,
    n_ctx: u64,
    key_length: Option<u64>,
    /// Shapes written to the file for Q and K/V rows and the vocabulary (default: consistent).
    q_rows: Option<u64>,
    kv_rows: Option<u64>,
    vocab_rows: Option<u64>,
    /// Tensor layers written (default: n_layer).
    layers_written: Option<u64>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            n_embd: 8,
            n_head: 2,
            n_head_kv: 1,
            n_layer: 2,
            n_ff: 16,
            n_ctx: 64,
            key_length: None,
            q_rows: None,
            kv_rows: None,
            vocab_rows: None,
            layers_written: None,
        }
    }
}

fn model(s: &Spec) -> Vec<u8> {
    let mut g = Gguf::default();
    g.string("general.architecture", "llama");
    g.u64("llama.context_length", s.n_ctx);
    g.u64("llama.embedding_length", s.n_embd);
    g.u64("llama.block_count", s.n_layer);
    g.u64("llama.feed_forward_length", s.n_ff);
    g.u64("llama.attention.head_count", s.n_head);
    g.u64("llama.attention.head_count_kv", s.n_head_kv);
    if let Some(k) = s.key_length {
        g.u64("llama.attention.key_length", k);
        g.u64("llama.attention.value_length", k);
    }
    g.f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
    g.string("tokenizer.ggml.model", "llama");
    g.strings("tokenizer.ggml.tokens", &TOKENS);
    g.f32s(
        "tokenizer.ggml.scores",
        &[0.0, 0.0, 0.0, -1.0, -1.0, -2.0, -2.0, -3.0],
    );
    g.i32s("tokenizer.ggml.token_type", &[2, 3, 3, 1, 1, 1, 1, 1]);
    g.u32("tokenizer.ggml.bos_token_id", 1);
    g.u32("tokenizer.ggml.eos_token_id", 2);
    let e = s.n_embd;
    let hd = s.key_length.unwrap_or(e.checked_div(s.n_head).unwrap_or(0));
    let q = s.q_rows.unwrap_or(s.n_head * hd);
    let kv = s.kv_rows.unwrap_or(s.n_head_kv * hd);
    g.tensor(
        "token_embd.weight",
        &[e, s.vocab_rows.unwrap_or(TOKENS.len() as u64)],
    );
    g.tensor("output_norm.weight", &[e]);
    for l in 0..s.layers_written.unwrap_or(s.n_layer) {
        let t = |n: &str| format!("blk.{l}.{n}.weight");
        g.tensor(&t("attn_norm"), &[e]);
        g.tensor(&t("attn_q"), &[e, q]);
        g.tensor(&t("attn_k"), &[e, kv]);
        g.tensor(&t("attn_v"), &[e, kv]);
        g.tensor(&t("attn_output"), &[q, e]);
        g.tensor(&t("ffn_norm"), &[e]);
        g.tensor(&t("ffn_gate"), &[e, s.n_ff]);
        g.tensor(&t("ffn_up"), &[e, s.n_ff]);
        g.tensor(&t("ffn_down"), &[s.n_ff, e]);
    }
    g.build()
}

/// Load (both through the default options and with an explicit context) and return the error.
fn load_err(s: &Spec) -> (String, String) {
    let bytes = model(s);
    match Engine::load(&bytes, &LoadOptions::default()) {
        Ok(_) => panic!("the crafted model loaded"),
        Err(e) => (e.code().to_owned(), e.to_string()),
    }
}

fn assert_names(got: &(String, String), code: &str, parts: &[&str]) {
    assert_eq!(got.0, code, "{}", got.1);
    for p in parts {
        assert!(got.1.contains(p), "`{}` does not mention `{p}`", got.1);
    }
}

#[test]
fn the_builder_makes_a_model_that_loads_and_generates() {
    let bytes = model(&Spec::default());
    let mut e = Engine::load(&bytes, &LoadOptions::default()).expect("the valid tiny model loads");
    let ids = e.tokenize(" a b", true, false).unwrap();
    assert_eq!(ids[0], 1, "BOS first: {ids:?}");
    let opts = GenerateOptions {
        max_tokens: 4,
        stop_at_eog: false,
        ..Default::default()
    };
    let g = e
        .generate(&ids, &opts, &mut |_| wasm_chord::engine::Control::Continue)
        .unwrap();
    assert_eq!(g.ids.len(), 4);
    assert!(
        g.ids.iter().all(|&t| (t as usize) < TOKENS.len()),
        "{:?}",
        g.ids
    );
}

#[test]
fn more_heads_than_embedding_values_is_a_metadata_error() {
    // head_dim = n_embd / n_head = 0: every attention matrix would have zero rows
    // (row_bytes used to divide by that and trap).
    let got = load_err(&Spec {
        n_head: 16,
        n_head_kv: 16,
        ..Default::default()
    });
    assert_names(&got, "bad_metadata", &["attention.head_count", "16", "8"]);
}

#[test]
fn a_matrix_with_zero_rows_is_a_tensor_error() {
    // Consistent with the header on the count of heads, but the tensor has no rows: the
    // vocabulary from the token list (8) disagrees with the embedding's zero rows.
    let got = load_err(&Spec {
        vocab_rows: Some(0),
        ..Default::default()
    });
    assert_names(&got, "bad_tensor", &["token_embd.weight"]);
}

#[test]
fn zero_sizes_in_the_header_name_the_key() {
    for (key, spec) in [
        (
            "embedding_length",
            Spec {
                n_embd: 0,
                ..Default::default()
            },
        ),
        (
            "block_count",
            Spec {
                n_layer: 0,
                ..Default::default()
            },
        ),
        (
            "feed_forward_length",
            Spec {
                n_ff: 0,
                ..Default::default()
            },
        ),
        (
            "attention.head_count",
            Spec {
                n_head: 0,
                ..Default::default()
            },
        ),
        (
            "attention.key_length",
            Spec {
                key_length: Some(0),
                ..Default::default()
            },
        ),
    ] {
        let got = load_err(&spec);
        assert_names(&got, "bad_metadata", &[key]);
    }
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    // 16M layers announced, two written: no allocation sized by the header's claim.
    let got = load_err(&Spec {
        n_layer: 1 << 24,
        layers_written: Some(2),
        ..Default::default()
    });
    assert_names(&got, "bad_tensor", &["blk.2.", "missing"]);
    // n_head · head_dim beyond any real model (and beyond usize on wasm32).
    let got = load_err(&Spec {
        n_head: 1 << 16,
        n_head_kv: 1 << 16,
        key_length: Some(1 << 16),
        q_rows: Some(1),
        kv_rows: Some(1),
        ..Default::default()
    });
    assert_names(
        &got,
        "bad_metadata",
        &["attention.head_count", "key_length"],
    );
    // A context length beyond usize on wasm32 does not wrap the KV cache size.
    let bytes = model(&Spec {
        n_ctx: u64::MAX,
        ..Default::default()
    });
    let got = match Engine::load(&bytes, &LoadOptions::default()) {
        Ok(_) => panic!("context_length u64::MAX loaded"),
        Err(e) => (e.code().to_owned(), e.to_string()),
    };
    assert_names(&got, "bad_metadata", &["context_length"]);
}

#[test]
fn huge_generation_requests_do_not_wrap() {
    let bytes = model(&Spec::default());
    let mut e = Engine::load(&bytes, &LoadOptions::default()).unwrap();
    let ids = e.tokenize(" a", true, false).unwrap();
    // prompt.len() + max_tokens would overflow: the context is capped by the training length.
    let opts = GenerateOptions {
        max_tokens: usize::MAX,
        stop_at_eog: false,
        ..Default::default()
    };
    let g = e
        .generate(&ids, &opts, &mut |_| wasm_chord::engine::Control::Continue)
        .unwrap();
    // 64 positions in the cache, and the last sampled token needs none.
    assert_eq!(
        g.prompt_ids.len() + g.ids.len(),
        65,
        "stops at the training context"
    );
    // A KV cache that cannot be allocated is an error, not an abort.
    let opts = GenerateOptions {
        max_tokens: 1,
        n_ctx: Some(usize::MAX / 2),
        ..Default::default()
    };
    let err = e
        .generate(&ids, &opts, &mut |_| wasm_chord::engine::Control::Continue)
        .unwrap_err();
    assert_eq!(err.code(), "out_of_memory", "{err}");
    assert!(err.to_string().contains("KV cache"), "{err}");
}
