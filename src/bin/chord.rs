//! `chord`: the native command-line tool.
//!
//!   chord inspect MODEL [--json]            architecture, hyper-parameters, tokenizer, tensors
//!   chord dequant MODEL TENSOR [--out FILE]  a tensor as little-endian f32 (GGUF element order)
//!
//! Errors go to stderr with exit status 1 (2 for usage errors); bad files never panic.

use serde_json::{json, Map, Value as Json};
use std::io::Write;
use std::process::ExitCode;
use wasm_chord::chat::{messages_from_value, ChatMessage, RenderOptions};
use wasm_chord::engine::{block_on, Backend, Control, Engine, GenerateOptions, LoadOptions};
use wasm_chord::gguf::{self, Array, GgufHeader, Value};
use wasm_chord::sampling::SamplerConfig;
use wasm_chord::tokenizer::Tokenizer;
use wasm_chord::{cpu, quant, Error};

/// The dev server for the browser app (`chord serve`).
#[path = "../serve.rs"]
mod serve;

const USAGE: &str = "usage:
  chord inspect MODEL [--json]
  chord dequant MODEL TENSOR [--out FILE]
  chord tokenize MODEL [--special] [--no-bos] (--text T | --file F) [--json]
  chord generate MODEL (--prompt P | --chat MSG [--system S] | --messages FILE.json) [-n N]
                 [--temp T] [--top-k K] [--top-p P] [--min-p M] [--repeat-penalty R] [--seed S]
                 [--stop STR] [--ctx N] [--threads N] [--backend cpu|gpu] [--kernel fast|reference]
                 [--special] [--json] [--json-schema FILE | --grammar FILE]
  chord logits MODEL (--prompt P [--special] | --ids 1,2,3) --out FILE [--backend cpu|gpu]
                 [--kernel fast|reference]
  chord bench MODEL [-p 128] [-n 64] [--reps 3] [--threads 1] [--backend cpu|gpu] [--kernel fast|reference]
              [--layout default|packed|aligned] [--shader-checks on|off]   (gpu)
  chord bench MODEL (--json-schema FILE | --grammar FILE) [-n 64] [--reps 3] [--backend cpu|gpu]
  chord bench MODEL --turns 8 [--turn-tokens 150] [-n 32] [--threads 1] [--backend cpu|gpu]
  chord bench MODEL --backend gpu --kernels [-p 64] [--shader-checks on|off]
  chord serve [--port 8080] [--models models/] [--root .] [--no-coop-coep] [--no-range]";

/// A command-line mistake (exit 2) or a failure (exit 1).
enum Fail {
    Usage(String),
    Run(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Run(e)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(m)) => {
            eprintln!("chord: {m}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Fail::Run(e)) => {
            eprintln!("chord: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Positional arguments and flags (`--name value` or bare `--name`).
struct Args<'a> {
    positional: Vec<&'a str>,
    flags: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> Args<'a> {
    /// `valued` lists the flags that take a value; any other flag is a switch.
    fn parse(args: &'a [String], switches: &[&str], valued: &[&str]) -> Result<Self, Fail> {
        let mut out = Args {
            positional: vec![],
            flags: vec![],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            // Short numeric flags as llama-bench spells them: -p 128 -n 64.
            let a = match a.as_str() {
                "-p" => "--p",
                "-n" => "--n",
                "-t" => "--threads",
                other => other,
            };
            if let Some(name) = a.strip_prefix("--") {
                if valued.contains(&name) {
                    let v = it
                        .next()
                        .ok_or_else(|| Fail::Usage(format!("--{name} needs a value")))?;
                    out.flags.push((name, Some(v)));
                } else if switches.contains(&name) {
                    out.flags.push((name, None));
                } else {
                    return Err(Fail::Usage(format!("unknown option --{name}")));
                }
            } else {
                out.positional.push(a);
            }
        }
        Ok(out)
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| *n == name)
    }

    fn value(&self, name: &str) -> Option<&'a str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v)
    }

    fn exactly(&self, n: usize, what: &str) -> Result<(), Fail> {
        if self.positional.len() == n {
            Ok(())
        } else {
            Err(Fail::Usage(format!("expected {what}")))
        }
    }
}

fn run(args: &[String]) -> Result<(), Fail> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(Fail::Usage("no command given".into()));
    };
    match cmd.as_str() {
        "inspect" => {
            let a = Args::parse(rest, &["json"], &[])?;
            a.exactly(1, "MODEL")?;
            inspect(a.positional[0], a.has("json"))
        }
        "dequant" => {
            let a = Args::parse(rest, &[], &["out"])?;
            a.exactly(2, "MODEL TENSOR")?;
            dequant(a.positional[0], a.positional[1], a.value("out"))
        }
        "logits" => {
            let a = Args::parse(
                rest,
                &["special"],
                &["ids", "prompt", "out", "kernel", "ctx", "backend"],
            )?;
            a.exactly(1, "MODEL")?;
            let out = a
                .value("out")
                .ok_or_else(|| Fail::Usage("--out is required".into()))?;
            let mut engine = load_engine(a.positional[0], &a)?;
            let ids = match (a.value("ids"), a.value("prompt")) {
                (Some(ids), None) => parse_ids(ids)?,
                (None, Some(p)) => engine.tokenize(p, true, a.has("special"))?,
                _ => return Err(Fail::Usage("give one of --ids or --prompt".into())),
            };
            let logits = engine.logits(&ids)?;
            let le: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(out, &le).map_err(|e| Fail::Run(io_err(format!("writing {out}"))(e)))
        }
        "tokenize" => {
            let a = Args::parse(rest, &["special", "json", "no-bos"], &["text", "file"])?;
            a.exactly(1, "MODEL")?;
            let text = text_arg(&a)?;
            tokenize(
                a.positional[0],
                &text,
                a.has("special"),
                !a.has("no-bos"),
                a.has("json"),
            )
        }
        "generate" => {
            let a = Args::parse(
                rest,
                &["json", "special"],
                &[
                    "prompt",
                    "chat",
                    "messages",
                    "system",
                    "n",
                    "temp",
                    "top-k",
                    "top-p",
                    "min-p",
                    "repeat-penalty",
                    "seed",
                    "threads",
                    "kernel",
                    "stop",
                    "ctx",
                    "backend",
                    "json-schema",
                    "grammar",
                ],
            )?;
            a.exactly(1, "MODEL")?;
            generate(&a)
        }
        "bench" => {
            let a = Args::parse(
                rest,
                &["kernels"],
                &[
                    "p",
                    "n",
                    "reps",
                    "kernel",
                    "threads",
                    "backend",
                    "layout",
                    "shader-checks",
                    "json-schema",
                    "grammar",
                    "turns",
                    "turn-tokens",
                ],
            )?;
            a.exactly(1, "MODEL")?;
            if let Some(turns) = parse_num(a.value("turns"), "turns")? {
                // Time to first token per turn, with and without reuse (docs/performance.md).
                cpu::matmul::set_threads(parse_num(a.value("threads"), "threads")?.unwrap_or(1));
                let mut engine = load_engine(a.positional[0], &a)?;
                let out = wasm_chord::conversation::bench::bench_turns(
                    &mut engine,
                    turns.max(1),
                    parse_num(a.value("turn-tokens"), "turn-tokens")?.unwrap_or(150),
                    parse_num(a.value("n"), "n")?.unwrap_or(32).max(1),
                )?;
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                return Ok(());
            }
            if let Some(g) = grammar_arg(&a)? {
                // Constrained against unconstrained engine decode (docs/performance.md).
                cpu::matmul::set_threads(parse_num(a.value("threads"), "threads")?.unwrap_or(1));
                let mut engine = load_engine(a.positional[0], &a)?;
                let out = wasm_chord::constrain::bench::bench_constrained(
                    &mut engine,
                    "Describe a fictional person as JSON.",
                    &g,
                    parse_num(a.value("n"), "n")?.unwrap_or(64).max(2),
                    parse_num(a.value("reps"), "reps")?.unwrap_or(3).max(1),
                )?;
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                return Ok(());
            }
            let checks = match a.value("shader-checks") {
                None => None,
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some(o) => {
                    let m = format!("--shader-checks is on or off, not `{o}`");
                    return Err(Fail::Usage(m));
                }
            };
            let gpu_only = a.value("layout").is_some() || checks.is_some();
            if gpu_only && backend(a.value("backend"))? != Backend::Gpu {
                return Err(Fail::Usage(
                    "--layout and --shader-checks need --backend gpu".into(),
                ));
            }
            if a.has("kernels") {
                if backend(a.value("backend"))? != Backend::Gpu {
                    return Err(Fail::Usage("--kernels needs --backend gpu".into()));
                }
                return bench_gpu_kernels(
                    a.positional[0],
                    parse_num(a.value("p"), "p")?.unwrap_or(64).max(1),
                    checks,
                );
            }
            // One thread unless asked: the numbers then compare with llama.cpp's -t 1.
            cpu::matmul::set_threads(parse_num(a.value("threads"), "threads")?.unwrap_or(1));
            if backend(a.value("backend"))? == Backend::Gpu {
                let layout = match a.value("layout") {
                    None | Some("default") => None,
                    Some("packed") => Some(wasm_chord::gpu::kernels::Layout::Packed),
                    Some("aligned") => Some(wasm_chord::gpu::kernels::Layout::Aligned),
                    Some(o) => {
                        let m = format!("--layout is default, packed or aligned, not `{o}`");
                        return Err(Fail::Usage(m));
                    }
                };
                return bench_gpu(
                    a.positional[0],
                    parse_num(a.value("p"), "p")?.unwrap_or(128),
                    parse_num(a.value("n"), "n")?.unwrap_or(64),
                    parse_num(a.value("reps"), "reps")?.unwrap_or(3).max(1),
                    (layout, checks),
                );
            }
            bench(
                a.positional[0],
                parse_num(a.value("p"), "p")?.unwrap_or(128),
                parse_num(a.value("n"), "n")?.unwrap_or(64),
                parse_num(a.value("reps"), "reps")?.unwrap_or(3).max(1),
                kernel(a.value("kernel"))?,
            )
        }
        "serve" => {
            let a = Args::parse(
                rest,
                &["no-coop-coep", "no-range"],
                &["port", "models", "root"],
            )?;
            a.exactly(0, "no positional arguments")?;
            serve::serve(&serve::ServeOptions {
                port: parse_num(a.value("port"), "port")?.unwrap_or(8080) as u16,
                root: a.value("root").unwrap_or(".").into(),
                models: a.value("models").unwrap_or("models").into(),
                coop_coep: !a.has("no-coop-coep"),
                range: !a.has("no-range"),
            })
            .map_err(|e| Fail::Run(io_err("serving HTTP on 127.0.0.1".into())(e)))
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(Fail::Usage(format!("unknown command `{other}`"))),
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

fn file_size(path: &str) -> Result<u64, Error> {
    Ok(std::fs::metadata(path)
        .map_err(io_err(format!("opening {path}")))?
        .len())
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
        if let Some(v) = h.arch_u64(key)? {
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
/// (`Config::from_header` and `Config::gpu_unsupported`).
fn engine_support(h: &gguf::GgufHeader) -> Json {
    match wasm_chord::model::Config::from_header(h) {
        Ok(cfg) => json!({
            "cpu": true,
            "gpu": cfg.gpu_unsupported().is_none(),
            "problem": cfg.gpu_unsupported(),
        }),
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

fn write_stdout(bytes: &[u8]) -> Result<(), Fail> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| Fail::Run(io_err("writing to stdout".into())(e))),
    }
}

fn dequant(path: &str, name: &str, out: Option<&str>) -> Result<(), Fail> {
    let h = gguf::read_header_from_path(path)?;
    let t = h
        .tensor(name)
        .ok_or_else(|| Error::TensorNotFound(name.to_owned()))?;
    if !t.ty.is_supported() {
        return Err(Error::Tensor {
            tensor: t.name.clone(),
            source: quant::QuantError::Unsupported(t.ty),
        }
        .into());
    }
    let bytes = gguf::read_tensor_bytes(path, &h, t)?;
    let values =
        quant::dequantize_to_vec(t.ty, &bytes, t.n_elements as usize).map_err(|source| {
            Error::Tensor {
                tensor: t.name.clone(),
                source,
            }
        })?;
    let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    match out {
        Some(file) => {
            std::fs::write(file, &le).map_err(|e| Fail::Run(io_err(format!("writing {file}"))(e)))
        }
        None => write_stdout(&le),
    }
}

fn parse_ids(s: &str) -> Result<Vec<u32>, Fail> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse()
                .map_err(|_| Fail::Usage(format!("bad token id `{t}`")))
        })
        .collect()
}

fn parse_num(v: Option<&str>, name: &str) -> Result<Option<usize>, Fail> {
    v.map(|s| {
        s.parse()
            .map_err(|_| Fail::Usage(format!("--{name} needs a number, got `{s}`")))
    })
    .transpose()
}

fn kernel(v: Option<&str>) -> Result<cpu::Kernel, Fail> {
    match v {
        None | Some("fast") => Ok(cpu::Kernel::Fast),
        Some("reference") => Ok(cpu::Kernel::Reference),
        Some(o) => Err(Fail::Usage(format!(
            "--kernel is fast or reference, not `{o}`"
        ))),
    }
}

/// Median, min and max of a series of rates.
fn stats(mut v: Vec<f64>) -> Json {
    v.sort_by(f64::total_cmp);
    json!({"median": v[v.len() / 2], "min": v[0], "max": v[v.len() - 1]})
}

/// Prefill of `p` tokens in one batch, then `n` single-token decode steps, each repetition in a
/// fresh KV cache (as llama-bench's pp/tg tests). Prints JSON.
fn bench(path: &str, p: usize, n: usize, reps: usize, kernel: cpu::Kernel) -> Result<(), Fail> {
    use std::time::Instant;
    let src = wasm_chord::source::FileSource::open(path)?;
    let t0 = Instant::now();
    let (_, model) = cpu::CpuModel::load(&src, kernel)?;
    let load_s = t0.elapsed().as_secs_f64();
    // Deterministic ids spread over the vocabulary; the content does not change the work.
    let v = model.cfg.n_vocab as u32;
    let prompt: Vec<u32> = (0..p as u32).map(|i| (i * 7919 + 13) % v).collect();
    let (mut pp, mut tg) = (vec![], vec![]);
    for _ in 0..reps {
        let mut cache = cpu::KvCache::new(&model.cfg, p + n + 1);
        if p > 0 {
            let t = Instant::now();
            model.forward(&prompt, 0, &mut cache)?;
            pp.push(p as f64 / t.elapsed().as_secs_f64());
        }
        let mut cache = cpu::KvCache::new(&model.cfg, n + 1);
        let t = Instant::now();
        let mut tok = 1 % v;
        for i in 0..n {
            let l = model.forward(&[tok], i, &mut cache)?;
            tok = wasm_chord::sampling::argmax(&l) as u32;
        }
        if n > 0 {
            tg.push(n as f64 / t.elapsed().as_secs_f64());
        }
    }
    let out = json!({
        "model": path,
        "backend": "cpu",
        "kernel": format!("{kernel:?}").to_lowercase(),
        "threads": cpu::matmul::threads(),
        "weights_bytes": model.w.bytes(),
        "load_s": load_s,
        "pp": {"tokens": p, "tok_s": if pp.is_empty() { Json::Null } else { stats(pp) }},
        "tg": {"tokens": n, "tok_s": if tg.is_empty() { Json::Null } else { stats(tg) }},
        "reps": reps,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

fn backend(v: Option<&str>) -> Result<Backend, Fail> {
    match v {
        None | Some("cpu") => Ok(Backend::Cpu),
        Some("gpu") => Ok(Backend::Gpu),
        Some(o) => Err(Fail::Usage(format!("--backend is cpu or gpu, not `{o}`"))),
    }
}

/// Load with `--backend`, `--kernel` and `--ctx` from the command line.
fn load_engine(path: &str, a: &Args) -> Result<Engine, Fail> {
    let src = wasm_chord::source::FileSource::open(path)?;
    let opts = LoadOptions {
        backend: backend(a.value("backend"))?,
        kernel: kernel(a.value("kernel"))?,
        n_ctx: parse_num(a.value("ctx"), "ctx")?,
        ..Default::default()
    };
    let engine = Engine::load(&src, &opts)?;
    if let Some(adapter) = engine.adapter() {
        eprintln!("chord: GPU adapter: {adapter}");
    }
    Ok(engine)
}

fn text_arg(a: &Args) -> Result<String, Fail> {
    match (a.value("text"), a.value("file")) {
        (Some(t), None) => Ok(t.to_owned()),
        (None, Some("-")) => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| Fail::Run(io_err("reading stdin".into())(e)))?;
            Ok(s)
        }
        (None, Some(f)) => {
            std::fs::read_to_string(f).map_err(|e| Fail::Run(io_err(format!("reading {f}"))(e)))
        }
        _ => Err(Fail::Usage("give one of --text or --file".into())),
    }
}

fn tokenize(
    path: &str,
    text: &str,
    special: bool,
    add_special: bool,
    as_json: bool,
) -> Result<(), Fail> {
    let h = gguf::read_header_from_path(path)?;
    let tok = Tokenizer::from_gguf(&h).map_err(Error::from)?;
    let ids = tok
        .encode(text, add_special, special)
        .map_err(Error::from)?;
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| {
            tok.token_to_piece(id, true)
                .map(|p| String::from_utf8_lossy(&p).into_owned())
                .unwrap_or_default()
        })
        .collect();
    let out = if as_json {
        serde_json::to_string(&json!({"n_tokens": ids.len(), "ids": ids, "pieces": pieces}))
            .unwrap_or_default()
    } else {
        ids.iter()
            .zip(&pieces)
            .map(|(id, p)| format!("{id:>8} {p:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    write_stdout(format!("{out}\n").as_bytes())
}

fn parse_f32(a: &Args, name: &str) -> Result<Option<f32>, Fail> {
    a.value(name)
        .map(|s| {
            s.parse()
                .map_err(|_| Fail::Usage(format!("--{name} needs a number, got `{s}`")))
        })
        .transpose()
}

/// `--json-schema FILE` or `--grammar FILE` (Lark): the constraint, if any.
fn grammar_arg(a: &Args) -> Result<Option<wasm_chord::constrain::Grammar>, Fail> {
    use wasm_chord::constrain::Grammar;
    let read = |f: &str| {
        std::fs::read_to_string(f).map_err(|e| Fail::Run(io_err(format!("reading {f}"))(e)))
    };
    match (a.value("json-schema"), a.value("grammar")) {
        (None, None) => Ok(None),
        (Some(f), None) => {
            let schema: Json = serde_json::from_str(&read(f)?)
                .map_err(|e| Fail::Run(Error::InvalidRequest(format!("{f} is not JSON: {e}"))))?;
            Ok(Some(Grammar::JsonSchema(schema)))
        }
        (None, Some(f)) => Ok(Some(Grammar::Lark(read(f)?))),
        (Some(_), Some(_)) => Err(Fail::Usage("give one of --json-schema or --grammar".into())),
    }
}

fn generate(a: &Args) -> Result<(), Fail> {
    // 0 = one thread per core.
    cpu::matmul::set_threads(parse_num(a.value("threads"), "threads")?.unwrap_or(0));
    let mut engine = load_engine(a.positional[0], a)?;
    let ids = match (a.value("prompt"), a.value("chat"), a.value("messages")) {
        (Some(p), None, None) => engine.tokenize(p, true, a.has("special"))?,
        (None, Some(msg), None) => {
            let mut msgs = vec![];
            if let Some(sys) = a.value("system") {
                msgs.push(ChatMessage::system(sys));
            }
            msgs.push(ChatMessage::user(msg));
            engine.chat_prompt_ids(&msgs, &RenderOptions::default())?
        }
        (None, None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Fail::Run(io_err(format!("reading {file}"))(e)))?;
            let v: Json = serde_json::from_str(&text).map_err(|e| {
                Fail::Run(Error::InvalidRequest(format!("{file} is not JSON: {e}")))
            })?;
            let msgs = messages_from_value(&v).map_err(Error::from)?;
            engine.chat_prompt_ids(&msgs, &RenderOptions::default())?
        }
        _ => {
            return Err(Fail::Usage(
                "give one of --prompt, --chat or --messages".into(),
            ))
        }
    };
    let d = SamplerConfig::default();
    let opts = GenerateOptions {
        max_tokens: parse_num(a.value("n"), "n")?.unwrap_or(128),
        sampler: SamplerConfig {
            temperature: parse_f32(a, "temp")?.unwrap_or(d.temperature),
            top_k: parse_num(a.value("top-k"), "top-k")?.unwrap_or(d.top_k),
            top_p: parse_f32(a, "top-p")?.unwrap_or(d.top_p),
            min_p: parse_f32(a, "min-p")?.unwrap_or(d.min_p),
            repeat_penalty: parse_f32(a, "repeat-penalty")?.unwrap_or(d.repeat_penalty),
            seed: parse_num(a.value("seed"), "seed")?.unwrap_or(0) as u64,
            ..d
        },
        stop: a
            .value("stop")
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default(),
        n_ctx: parse_num(a.value("ctx"), "ctx")?,
        grammar: grammar_arg(a)?,
        ..Default::default()
    };
    let as_json = a.has("json");
    let mut stdout = std::io::stdout();
    let g = engine.generate(&ids, &opts, &mut |ev| {
        if !as_json {
            // Stream as it comes; a closed pipe ends generation.
            if stdout
                .write_all(ev.text.as_bytes())
                .and_then(|_| stdout.flush())
                .is_err()
            {
                return Control::Stop;
            }
        }
        Control::Continue
    })?;
    if as_json {
        let out = json!({
            "prompt_ids": g.prompt_ids,
            "ids": g.ids,
            "text": g.text,
            "finish": format!("{:?}", g.finish),
            "timings": {
                "prompt_tokens": g.prompt_ids.len(),
                "prompt_ms": g.prompt_ms,
                "prompt_tok_s": g.prompt_ids.len() as f64 / (g.prompt_ms / 1e3),
                "gen_tokens": g.ids.len(),
                "gen_ms": g.gen_ms,
                "gen_tok_s": g.ids.len().saturating_sub(1) as f64 / (g.gen_ms / 1e3),
            },
        });
        write_stdout(format!("{}\n", serde_json::to_string(&out).unwrap_or_default()).as_bytes())
    } else {
        write_stdout(b"\n")
    }
}

/// The GPU backend: prefill of `p` tokens, then `n` greedy decode steps (one submission and a
/// 4-byte readback each), timed per step.
fn bench_gpu(
    path: &str,
    p: usize,
    n: usize,
    reps: usize,
    (layout, checks): (Option<wasm_chord::gpu::kernels::Layout>, Option<bool>),
) -> Result<(), Fail> {
    use std::time::Instant;
    use wasm_chord::gpu::{GpuContext, GpuModel};
    let src = wasm_chord::source::FileSource::open(path)?;
    let t0 = Instant::now();
    let mut ctx = block_on(GpuContext::new())?.with_layout(layout);
    if let Some(on) = checks {
        ctx = ctx.with_shader_checks(on);
    }
    let adapter = ctx.describe();
    let shader_checks = ctx.shader_checks;
    let mut model = GpuModel::load(ctx, &src, p + n + 1)?;
    let load_s = t0.elapsed().as_secs_f64();
    let v = model.cfg.n_vocab as u32;
    let prompt: Vec<u32> = (0..p as u32).map(|i| (i * 7919 + 13) % v).collect();
    let (mut pp, mut tg, mut step_ms) = (vec![], vec![], vec![]);
    let (mut decode_stats, mut created_per_step) = (None, 0);
    for _ in 0..reps {
        if p > 0 {
            let t = Instant::now();
            block_on(model.forward(&prompt, 0))?;
            pp.push(p as f64 / t.elapsed().as_secs_f64());
        }
        let t = Instant::now();
        let mut tok = 1 % v;
        for i in 0..n {
            let s = Instant::now();
            let before = model.ctx.created();
            tok = block_on(model.step_argmax(tok, i))?;
            step_ms.push(s.elapsed().as_secs_f64() * 1e3);
            decode_stats = Some(model.last_step());
            created_per_step = created_per_step.max(model.ctx.created() - before);
        }
        if n > 0 {
            tg.push(n as f64 / t.elapsed().as_secs_f64());
        }
    }
    if let Some(st) = decode_stats {
        eprintln!(
            "decode step: {} dispatches ({:.2} per layer over {} layers), {} submission, {} \
             buffer copies, {:.1} MB of weights read, {created_per_step} objects created",
            st.dispatches,
            st.dispatches as f64 / model.cfg.n_layer as f64,
            model.cfg.n_layer,
            st.submissions,
            st.copies,
            model.step_weight_bytes() as f64 / 1e6
        );
    }
    let out = json!({
        "model": path,
        "backend": "gpu",
        "adapter": adapter,
        "load_s": load_s,
        "pp": {"tokens": p, "tok_s": if pp.is_empty() { Json::Null } else { stats(pp) }},
        "tg": {"tokens": n, "tok_s": if tg.is_empty() { Json::Null } else { stats(tg) }},
        "step_ms": if step_ms.is_empty() { Json::Null } else { stats(step_ms) },
        "layout": layout.map_or("default".into(), |l| format!("{l:?}").to_lowercase()),
        "step_weight_bytes": model.step_weight_bytes(),
        "shader_checks": shader_checks,
        "dispatches_per_step": decode_stats.map(|s| s.dispatches),
        "dispatches_per_layer": decode_stats.map(|s| s.dispatches as f64 / model.cfg.n_layer as f64),
        "submissions_per_step": decode_stats.map(|s| s.submissions),
        "copies_per_step": decode_stats.map(|s| s.copies),
        "objects_created_per_step": created_per_step,
        "n_layer": model.cfg.n_layer,
        "readback_bytes_per_step": 4,
        "reps": reps,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

/// `--kernels`: effective bandwidth of the matrix kernels. For the model's layer-0 matrices and
/// its output matrix, then a 2048 × 2048 synthetic matrix of every GPU format: matvec.wgsl on
/// one token (a decode step), matvec.wgsl over `p` tokens (workgroup z = token: the weights
/// read once per token) and matmat.wgsl over `p` tokens (read once per 8 tokens). Each is many
/// dispatches in one submission, wall-clock timed to the device going idle. GB/s is bytes of
/// weights per product / time (`weights_gbs`), and for `p` tokens also as if each token read
/// them (`per_token_gbs` = bytes · p / time). Formats whose blocks are not word-aligned are
/// timed in both layouts (GGUF bytes through byte helpers, and repacked to whole words); the
/// bytes counted are those uploaded. Prints JSON.
fn bench_gpu_kernels(path: &str, p: usize, checks: Option<bool>) -> Result<(), Fail> {
    use wasm_chord::gpu::bench::{synthetic_matrix, time_product, Product};
    use wasm_chord::gpu::kernels::{layouts, GPU_TYPES};
    use wasm_chord::gpu::{GpuContext, GpuMatrix};
    let src = wasm_chord::source::FileSource::open(path)?;
    let header = wasm_chord::source::read_header(&src)?;
    let mut ctx = block_on(GpuContext::new())?;
    if let Some(on) = checks {
        ctx = ctx.with_shader_checks(on);
    }
    let budget = 0.3;
    let mut mats = Vec::new();
    let mut names: Vec<String> = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ]
    .iter()
    .map(|n| format!("blk.0.{n}.weight"))
    .collect();
    names.push(if header.tensor("output.weight").is_some() {
        "output.weight".into()
    } else {
        "token_embd.weight".into()
    });
    for name in &names {
        let Some(t) = header.tensor(name) else {
            continue;
        };
        let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
        let at = header.tensor_range(t).start;
        for l in layouts(t.ty) {
            let m = GpuMatrix::upload_from(&ctx, name, t.ty, (rows, cols), &src, at, l)?;
            mats.push(m);
        }
    }
    for (i, &ty) in GPU_TYPES.iter().enumerate() {
        let q = synthetic_matrix(ty, 2048, 2048, 7 + i as u64);
        for l in layouts(ty) {
            mats.push(GpuMatrix::upload_as(&ctx, &q, l)?);
        }
    }
    // First (a timeout keeps what stderr has printed): the fused decode kernels of layer 0
    // (default layouts) against their unfused chains.
    let cfg = wasm_chord::model::Config::from_header(&header)?;
    let mut layer = Vec::new();
    for n in [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ] {
        let name = format!("blk.0.{n}.weight");
        let t = header
            .tensor(&name)
            .ok_or_else(|| Fail::Usage(format!("{path}: no tensor {name}")))?;
        let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
        let at = header.tensor_range(t).start;
        let l = ctx.layout_for(t.ty);
        layer.push(GpuMatrix::upload_from(
            &ctx,
            &name,
            t.ty,
            (rows, cols),
            &src,
            at,
            l,
        )?);
    }
    let lm = wasm_chord::gpu::bench::LayerMatrices {
        q: &layer[0],
        k: &layer[1],
        v: &layer[2],
        o: &layer[3],
        gate: &layer[4],
        up: &layer[5],
        down: &layer[6],
    };
    let mut fused_rows = Vec::new();
    for t in wasm_chord::gpu::bench::time_fused(&ctx, &lm, cfg.head_dim, budget)? {
        eprintln!(
            "fused {:<28} {:>9.1} us ({} dispatches) vs unfused {:>9.1} us ({} dispatches), {:.2} GB/s fused",
            t.what,
            t.fused_s * 1e6,
            t.fused_dispatches,
            t.unfused_s * 1e6,
            t.unfused_dispatches,
            t.bytes as f64 / t.fused_s / 1e9
        );
        fused_rows.push(json!({
            "what": t.what,
            "bytes": t.bytes,
            "fused_us": t.fused_s * 1e6,
            "fused_dispatches": t.fused_dispatches,
            "unfused_us": t.unfused_s * 1e6,
            "unfused_dispatches": t.unfused_dispatches,
        }));
    }
    let mut rows = Vec::new();
    for m in &mats {
        let x = ctx.storage_f32("x", m.cols * p);
        let y = ctx.storage_f32("y", m.rows * p);
        let bytes = m.bytes() as f64;
        let (t1, i1) = time_product(&ctx, m, &x, &y, 1, Product::Matvec(None), budget)?;
        let (tv, iv) = time_product(&ctx, m, &x, &y, p, Product::Matvec(None), budget)?;
        // Decode matvec at other workgroup shapes: rows per workgroup → µs.
        let mut sweep = serde_json::Map::new();
        for rows in [1u32, 2, 4, 8, 16, 32] {
            let (t, _) = time_product(&ctx, m, &x, &y, 1, Product::Matvec(Some(rows)), 0.05)?;
            sweep.insert(rows.to_string(), json!(t * 1e6));
        }
        eprintln!(
            "    matvec µs by rows per workgroup: {}",
            Json::Object(sweep.clone())
        );
        let (tm, im) = time_product(&ctx, m, &x, &y, p, Product::Matmat, budget)?;
        let row = json!({
            "matrix": m.name,
            "type": m.ty.to_string(),
            "layout": format!("{:?}", m.layout).to_lowercase(),
            "rows": m.rows,
            "cols": m.cols,
            "bytes": m.bytes(),
            "matvec_1": {"us": t1 * 1e6, "weights_gbs": bytes / t1 / 1e9, "dispatches": i1},
            "matvec_z": {"tokens": p, "us": tv * 1e6, "weights_gbs": bytes / tv / 1e9,
                         "per_token_gbs": bytes * p as f64 / tv / 1e9, "dispatches": iv},
            "matmat": {"tokens": p, "us": tm * 1e6, "weights_gbs": bytes / tm / 1e9,
                       "per_token_gbs": bytes * p as f64 / tm / 1e9, "dispatches": im},
            "matmat_speedup": tv / tm,
            "matvec_1_us_by_rows": sweep,
        });
        eprintln!(
            "{:<24} {:>5} {:<7} {:>5}x{:<5} {:>9} B  matvec {:>8.1} us {:>6.2} GB/s | {p} tok: matvec(z) {:>9.1} us {:>6.2} GB/s/tok, matmat {:>9.1} us {:>6.2} GB/s/tok, x{:.2}",
            m.name,
            m.ty.to_string(),
            format!("{:?}", m.layout).to_lowercase(),
            m.rows,
            m.cols,
            m.bytes(),
            t1 * 1e6,
            bytes / t1 / 1e9,
            tv * 1e6,
            bytes * p as f64 / tv / 1e9,
            tm * 1e6,
            bytes * p as f64 / tm / 1e9,
            tv / tm
        );
        rows.push(row);
    }
    let out = json!({
        "model": path,
        "backend": "gpu",
        "adapter": ctx.describe(),
        "timing": "wall clock of one submission of N back-to-back dispatches, to device idle; median of 3",
        "shader_checks": ctx.shader_checks,
        "tokens": p,
        "kernels": rows,
        "fused": fused_rows,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}
