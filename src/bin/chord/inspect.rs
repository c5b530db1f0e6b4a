//! `chord inspect MODEL [--json]`: architecture, hyper-parameters, tokenizer and tensor table.

use crate::{file_size, write_stdout, Fail};
use serde_json::{json, Map, Value as Json};
use wasm_chord::gguf::{self, Array, GgufHeader, Value};
use wasm_chord::Error;

/// `chord inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file.
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// Print JSON (every metadata key; long arrays summarised).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &Args) -> Result<(), Fail> {
    inspect(&a.model, a.json)
}

/// A metadata value as JSON; arrays longer than `max` are summarised.
fn value_json(v: &Value, max: usize) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::Array(a) if a.len() > max => {
            json!({"type": "array", "element_type": a.element_type().name(), "len": a.len()})
        }
        Value::Array(a) => array_json(a),
    }
}

fn array_json(a: &Array) -> Json {
    match a {
        Array::U8(v) => json!(v),
        Array::I8(v) => json!(v),
        Array::U16(v) => json!(v),
        Array::I16(v) => json!(v),
        Array::U32(v) => json!(v),
        Array::I32(v) => json!(v),
        Array::U64(v) => json!(v),
        Array::I64(v) => json!(v),
        Array::F32(v) => json!(v),
        Array::F64(v) => json!(v),
        Array::Bool(v) => json!(v),
        Array::String(v) => json!(v),
        Array::Array(v) => Json::Array(v.iter().map(array_json).collect()),
    }
}

/// Hyper-parameters present in the metadata (absent keys are left out).
fn hyperparameters(h: &GgufHeader) -> Result<Map<String, Json>, Error> {
    let mut m = Map::new();
    for key in [
        "context_length",
        "embedding_length",
        "block_count",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
        "attention.key_length",
        "attention.value_length",
        "attention.sliding_window",
        "rope.dimension_count",
        "rope.scaling.original_context_length",
        "vocab_size",
    ] {
        // Per-layer values (Gemma 4's `head_count_kv`, hybrids' layer patterns) are arrays.
        let full = format!("{}.{key}", h.architecture()?);
        if let Some(v @ Value::Array(_)) = h.metadata.get(&full) {
            m.insert(key.into(), value_json(v, 256));
        } else if let Some(v) = h.arch_u64(key)? {
            m.insert(key.into(), json!(v));
        }
    }
    for key in [
        "attention.layer_norm_rms_epsilon",
        "attention.layer_norm_epsilon",
        "rope.freq_base",
        "rope.scaling.factor",
        "attention.logit_softcapping",
        "final_logit_softcapping",
    ] {
        if let Some(v) = h.arch_f32(key)? {
            m.insert(key.into(), json!(v));
        }
    }
    if let Some(r) = h.rope_scaling()? {
        m.insert("rope.scaling.type".into(), json!(r.kind));
    }
    Ok(m)
}

fn tokenizer_summary(h: &GgufHeader) -> Result<Map<String, Json>, Error> {
    let mut m = Map::new();
    m.insert("model".into(), json!(h.tokenizer_model()?));
    m.insert("pre".into(), json!(h.tokenizer_pre()?));
    m.insert(
        "vocab_size".into(),
        json!(h.tokenizer_tokens()?.map(|t| t.len())),
    );
    m.insert(
        "merges".into(),
        json!(h.tokenizer_merges()?.map(|t| t.len())),
    );
    let tokens = h.tokenizer_tokens()?;
    let mut special = Map::new();
    for name in [
        "bos",
        "eos",
        "eot",
        "eom",
        "unknown",
        "padding",
        "separator",
    ] {
        if let Some(id) = h.special_token_id(name)? {
            let text = tokens.and_then(|t| t.get(id as usize));
            special.insert(name.into(), json!({"id": id, "text": text}));
        }
    }
    m.insert("special".into(), Json::Object(special));
    for flag in ["add_bos_token", "add_eos_token", "add_space_prefix"] {
        if let Some(v) = h.get_bool(&format!("tokenizer.ggml.{flag}"))? {
            m.insert(flag.into(), json!(v));
        }
    }
    m.insert(
        "has_chat_template".into(),
        json!(h.chat_template()?.is_some()),
    );
    Ok(m)
}

/// What the engine can do with this model: `{cpu, gpu, problem}` from the model description
/// (`Config::from_header`: both backends run every architecture it accepts) and the matrices'
/// block formats (the GPU needs a kernel for each).
fn engine_support(h: &gguf::GgufHeader) -> Json {
    match wasm_chord::model::Config::from_header(h) {
        Ok(_) => {
            let no_kernel: Vec<String> = h
                .tensors
                .iter()
                .filter(|t| {
                    t.dims.len() >= 2 && wasm_chord::gpu::kernels::gpu_format(t.ty).is_none()
                })
                .map(|t| format!("{} ({})", t.name, t.ty))
                .collect();
            let problem = (!no_kernel.is_empty()).then(|| {
                format!(
                    "no GPU kernel for the block format of {}",
                    no_kernel.join(", ")
                )
            });
            json!({"cpu": true, "gpu": problem.is_none(), "problem": problem})
        }
        Err(e) => json!({"cpu": false, "gpu": false, "problem": e.to_string()}),
    }
}

fn support_line(s: &Json) -> String {
    let problem = s["problem"].as_str().unwrap_or("");
    match (s["cpu"].as_bool(), s["gpu"].as_bool()) {
        (Some(true), Some(true)) => "runs on the CPU and GPU backends".into(),
        (Some(true), _) => format!("runs on the CPU backend only ({problem})"),
        _ => format!("CANNOT RUN this model: {problem}"),
    }
}

fn inspect(path: &str, as_json: bool) -> Result<(), Fail> {
    let size = file_size(path)?;
    let h = gguf::read_header_from_path(path)?;
    let arch = h.architecture()?;
    let hyper = hyperparameters(&h)?;
    let tok = tokenizer_summary(&h)?;
    let support = engine_support(&h);
    let tensors: Vec<Json> = h
        .tensors
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ty.name(),
                "shape": t.dims,
                "offset": h.tensor_range(t).start,
                "bytes": t.n_bytes,
            })
        })
        .collect();
    if as_json {
        let metadata: Map<String, Json> = h
            .metadata
            .iter()
            .map(|(k, v)| (k.to_owned(), value_json(v, 16)))
            .collect();
        let out = json!({
            "file": path,
            "file_size": size,
            "version": h.version,
            "alignment": h.alignment,
            "data_offset": h.data_offset,
            "architecture": arch,
            "engine": support,
            "name": h.model_name()?,
            "hyperparameters": hyper,
            "tokenizer": tok,
            "metadata": metadata,
            "tensor_count": h.tensors.len(),
            "tensors": tensors,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    let mut o = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        o,
        "file          {path} ({size} bytes, GGUF v{})",
        h.version
    );
    let _ = writeln!(o, "architecture  {arch}");
    let _ = writeln!(o, "engine        {}", support_line(&support));
    if let Some(n) = h.model_name()? {
        let _ = writeln!(o, "name          {n}");
    }
    for (k, v) in &hyper {
        let _ = writeln!(o, "  {k:<38} {v}");
    }
    let _ = writeln!(o, "tokenizer");
    for (k, v) in &tok {
        let _ = writeln!(o, "  {k:<38} {v}");
    }
    let mut hist: Vec<(&str, usize, u64)> = vec![];
    for t in &h.tensors {
        match hist.iter_mut().find(|e| e.0 == t.ty.name()) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.n_bytes;
            }
            None => hist.push((t.ty.name(), 1, t.n_bytes)),
        }
    }
    let _ = writeln!(
        o,
        "tensors       {} (data at byte {}, alignment {})",
        h.tensors.len(),
        h.data_offset,
        h.alignment
    );
    for (ty, n, bytes) in hist {
        let _ = writeln!(o, "  {ty:<8} {n:>5} tensors {bytes:>14} bytes");
    }
    let _ = writeln!(
        o,
        "\n{:<40} {:<8} {:<24} {:>12} {:>12}",
        "name", "type", "shape", "offset", "bytes"
    );
    for t in &h.tensors {
        let shape = format!("{:?}", t.dims);
        let _ = writeln!(
            o,
            "{:<40} {:<8} {:<24} {:>12} {:>12}",
            t.name,
            t.ty.name(),
            shape,
            h.tensor_range(t).start,
            t.n_bytes
        );
    }
    write_stdout(o.as_bytes())
}
