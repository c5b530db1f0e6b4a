//! `chord generate MODEL (--prompt P | --chat MSG [--system S] | --messages FILE.json)`: sample
//! text, streamed to stdout (or one JSON object with `--json`).

use crate::{grammar_arg, io_err, load_engine, write_stdout, Fail, LoadArgs};
use serde_json::{json, Value as Json};
use std::io::Write;
use wasm_chord::chat::{messages_from_value, ChatMessage, RenderOptions};
use wasm_chord::engine::{Control, GenerateOptions};
use wasm_chord::sampling::SamplerConfig;
use wasm_chord::{cpu, Error};

/// `chord generate`.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["prompt", "chat", "messages"]))]
pub struct Args {
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// A raw prompt (the tokenizer adds BOS as the model asks).
    #[arg(long)]
    pub prompt: Option<String>,
    /// One user message, rendered with the model's chat template.
    #[arg(long)]
    pub chat: Option<String>,
    /// A system message before --chat.
    #[arg(long)]
    pub system: Option<String>,
    /// A JSON file holding an array of {role, content} messages.
    #[arg(long, value_name = "FILE.json")]
    pub messages: Option<String>,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n", value_name = "N", default_value_t = 128)]
    pub n: usize,
    #[arg(long)]
    pub temp: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub min_p: Option<f32>,
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when the text contains this string.
    #[arg(long)]
    pub stop: Option<String>,
    /// CPU threads (0 = one per core).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Parse special-token text in --prompt.
    #[arg(long)]
    pub special: bool,
    /// Print one JSON object (ids, text, finish, timings) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Constrain the output to this JSON schema.
    #[arg(long, value_name = "FILE")]
    pub json_schema: Option<String>,
    /// Constrain the output to this Lark grammar.
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<String>,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub fn run(a: &Args) -> Result<(), Fail> {
    // 0 = one thread per core.
    cpu::matmul::set_threads(a.threads);
    let mut engine = load_engine(&a.model, &a.load)?;
    let ids = match (
        a.prompt.as_deref(),
        a.chat.as_deref(),
        a.messages.as_deref(),
    ) {
        (Some(p), None, None) => engine.tokenize(p, true, a.special)?,
        (None, Some(msg), None) => {
            let mut msgs = vec![];
            if let Some(sys) = &a.system {
                msgs.push(ChatMessage::system(sys.as_str()));
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
        max_tokens: a.n,
        sampler: SamplerConfig {
            temperature: a.temp.unwrap_or(d.temperature),
            top_k: a.top_k.unwrap_or(d.top_k),
            top_p: a.top_p.unwrap_or(d.top_p),
            min_p: a.min_p.unwrap_or(d.min_p),
            repeat_penalty: a.repeat_penalty.unwrap_or(d.repeat_penalty),
            seed: a.seed,
            ..d
        },
        stop: a.stop.iter().cloned().collect(),
        n_ctx: a.load.ctx,
        grammar: grammar_arg(a.json_schema.as_deref(), a.grammar.as_deref())?,
        ..Default::default()
    };
    let as_json = a.json;
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
