//! `chord`: the native command-line tool, one file per command (argument parsing by `clap`'s
//! derive API: every flag is declared once, with its help text, beside the command that reads
//! it).
//!
//! Errors go to stderr with exit status 1 (2 for usage errors); bad files never panic.

mod bench;
mod dequant;
mod generate;
mod inspect;
mod logits;
mod serve;
mod tokenize;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;
use wasm_chord::engine::{Backend, Engine, LoadOptions};
use wasm_chord::{cpu, Error};

#[derive(Parser)]
#[command(
    name = "chord",
    about = "wasm-chord: GGUF inspection, generation, benchmarks and the dev/API server",
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Architecture, hyper-parameters, tokenizer, tensors.
    Inspect(inspect::Args),
    /// A tensor as little-endian f32 (GGUF element order).
    Dequant(dequant::Args),
    /// Token ids and pieces of a text.
    Tokenize(tokenize::Args),
    /// Generate text from a prompt or chat messages.
    Generate(generate::Args),
    /// The last position's logits as little-endian f32.
    Logits(logits::Args),
    /// Prefill/decode speed (or the GPU kernels' bandwidth).
    Bench(bench::Args),
    /// The browser app's server.
    Serve(serve::Args),
}

/// A command-line mistake (exit 2) or a failure (exit 1).
pub enum Fail {
    Usage(String),
    Run(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Run(e)
    }
}

/// The compute backend, as `--backend` spells it.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    Cpu,
    Gpu,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Cpu => Backend::Cpu,
            BackendArg::Gpu => Backend::Gpu,
        }
    }
}

/// The CPU kernels, as `--kernel` spells them.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelArg {
    Fast,
    Reference,
}

impl From<KernelArg> for cpu::Kernel {
    fn from(k: KernelArg) -> cpu::Kernel {
        match k {
            KernelArg::Fast => cpu::Kernel::Fast,
            KernelArg::Reference => cpu::Kernel::Reference,
        }
    }
}

/// How a model is loaded: `--backend`, `--kernel`, `--ctx`.
#[derive(clap::Args, Clone)]
pub struct LoadArgs {
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendArg,
    /// CPU kernels: fast (SIMD) or the scalar reference.
    #[arg(long, value_enum, default_value = "fast")]
    pub kernel: KernelArg,
    /// KV-cache size in tokens.
    #[arg(long)]
    pub ctx: Option<usize>,
}

impl LoadArgs {
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            backend: self.backend.into(),
            kernel: self.kernel.into(),
            n_ctx: self.ctx,
            ..Default::default()
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return clap_error(e),
    };
    let r = match &cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Dequant(a) => dequant::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Logits(a) => logits::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(m)) => {
            eprintln!("chord: {m}\n(see chord --help)");
            ExitCode::from(2)
        }
        Err(Fail::Run(e)) => {
            eprintln!("chord: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Help and version go to stdout (exit 0); a usage mistake gets a one-line summary in our words
/// (`unknown command`, `unknown option --x`, `expected MODEL`), then clap's full message (exit 2).
fn clap_error(e: clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let values = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => vec![],
    };
    let summary = match e.kind() {
        ErrorKind::InvalidSubcommand => {
            format!(
                "unknown command `{}`",
                values(ContextKind::InvalidSubcommand).join(" ")
            )
        }
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "no command given".into()
        }
        ErrorKind::UnknownArgument => {
            format!(
                "unknown option {}",
                values(ContextKind::InvalidArg).join(" ")
            )
        }
        ErrorKind::MissingRequiredArgument => {
            let missing: Vec<String> = values(ContextKind::InvalidArg)
                .iter()
                .map(|a| a.trim_start_matches('<').trim_end_matches('>').to_owned())
                .collect();
            format!("expected {}", missing.join(" "))
        }
        _ => "bad arguments".into(),
    };
    eprintln!("chord: {summary}\n{}", e.render());
    ExitCode::from(2)
}

pub fn io_err(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

pub fn file_size(path: &str) -> Result<u64, Error> {
    Ok(std::fs::metadata(path)
        .map_err(io_err(format!("opening {path}")))?
        .len())
}

/// `--json-schema FILE` or `--grammar FILE` (Lark): the constraint, if any.
pub fn grammar_arg(
    json_schema: Option<&str>,
    grammar: Option<&str>,
) -> Result<Option<wasm_chord::constrain::Grammar>, Fail> {
    use wasm_chord::constrain::Grammar;
    let read = |f: &str| {
        std::fs::read_to_string(f).map_err(|e| Fail::Run(io_err(format!("reading {f}"))(e)))
    };
    match (json_schema, grammar) {
        (None, None) => Ok(None),
        (Some(f), None) => {
            let schema: serde_json::Value = serde_json::from_str(&read(f)?)
                .map_err(|e| Fail::Run(Error::InvalidRequest(format!("{f} is not JSON: {e}"))))?;
            Ok(Some(Grammar::JsonSchema(schema)))
        }
        (None, Some(f)) => Ok(Some(Grammar::Lark(read(f)?))),
        (Some(_), Some(_)) => Err(Fail::Usage("give one of --json-schema or --grammar".into())),
    }
}

pub fn write_stdout(bytes: &[u8]) -> Result<(), Fail> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| Fail::Run(io_err("writing to stdout".into())(e))),
    }
}

/// Load with `--backend`, `--kernel` and `--ctx` from the command line.
pub fn load_engine(path: &str, a: &LoadArgs) -> Result<Engine, Fail> {
    let src = wasm_chord::source::FileSource::open(path)?;
    let engine = Engine::load(&src, &a.options())?;
    if let Some(adapter) = engine.adapter() {
        eprintln!("chord: GPU adapter: {adapter}");
    }
    Ok(engine)
}
