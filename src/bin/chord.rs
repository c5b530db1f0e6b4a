//! `chord`: the native command-line tool.
//!
//!   chord inspect MODEL [--json]            architecture, hyper-parameters, tokenizer, tensors
//!   chord dequant MODEL TENSOR [--out FILE]  a tensor as little-endian f32 (GGUF element order)
//!
//! Errors go to stderr with exit status 1 (2 for usage errors); bad files never panic.

use serde_json::{json, Map, Value as Json};
use std::io::Write;
use std::process::ExitCode;
use wasm_chord::gguf::{self, Array, GgufHeader, Value};
use wasm_chord::{cpu, quant, Error};

const USAGE: &str = "usage:
  chord inspect MODEL [--json]
  chord dequant MODEL TENSOR [--out FILE]
  chord logits MODEL --ids 1,2,3 --out FILE [--kernel fast|reference] [--ctx N]";

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
            let a = Args::parse(rest, &[], &["ids", "out", "kernel", "ctx"])?;
            a.exactly(1, "MODEL")?;
            let ids = parse_ids(
                a.value("ids")
                    .ok_or_else(|| Fail::Usage("--ids is required".into()))?,
            )?;
            let out = a
                .value("out")
                .ok_or_else(|| Fail::Usage("--out is required".into()))?;
            logits(
                a.positional[0],
                &ids,
                out,
                kernel(a.value("kernel"))?,
                parse_num(a.value("ctx"), "ctx")?,
            )
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

fn inspect(path: &str, as_json: bool) -> Result<(), Fail> {
    let size = file_size(path)?;
    let h = gguf::read_header_from_path(path)?;
    let arch = h.architecture()?;
    let hyper = hyperparameters(&h)?;
    let tok = tokenizer_summary(&h)?;
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

fn logits(
    path: &str,
    ids: &[u32],
    out: &str,
    kernel: cpu::Kernel,
    ctx: Option<usize>,
) -> Result<(), Fail> {
    let src = wasm_chord::source::FileSource::open(path)?;
    let (_, model) = cpu::CpuModel::load(&src, kernel)?;
    let mut cache = cpu::KvCache::new(&model.cfg, ctx.unwrap_or(ids.len().max(1)));
    let logits = model.forward(ids, 0, &mut cache)?;
    let le: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out, &le).map_err(|e| Fail::Run(io_err(format!("writing {out}"))(e)))
}
