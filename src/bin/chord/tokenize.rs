//! `chord tokenize MODEL (--text T | --file F)`: token ids and pieces.

use crate::{io_err, write_stdout, Fail};
use serde_json::json;
use wasm_chord::gguf;
use wasm_chord::tokenizer::Tokenizer;
use wasm_chord::Error;

/// `chord tokenize`.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["text", "file"]))]
pub struct Args {
    #[arg(value_name = "MODEL")]
    pub model: String,
    #[arg(long)]
    pub text: Option<String>,
    /// A file to read (`-` = stdin).
    #[arg(long)]
    pub file: Option<String>,
    /// Parse special-token text.
    #[arg(long)]
    pub special: bool,
    /// Do not add BOS/EOS.
    #[arg(long)]
    pub no_bos: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &Args) -> Result<(), Fail> {
    let text = match (&a.text, a.file.as_deref()) {
        (Some(t), _) => t.clone(),
        (None, Some("-")) => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| Fail::Run(io_err("reading stdin".into())(e)))?;
            s
        }
        (None, Some(f)) => {
            std::fs::read_to_string(f).map_err(|e| Fail::Run(io_err(format!("reading {f}"))(e)))?
        }
        (None, None) => return Err(Fail::Usage("give one of --text or --file".into())),
    };
    tokenize(&a.model, &text, a.special, !a.no_bos, a.json)
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
