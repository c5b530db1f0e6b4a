//! `chord logits MODEL (--prompt P | --ids 1,2,3) --out FILE`: the last position's logits as
//! little-endian f32.

use crate::{io_err, load_engine, Fail, LoadArgs};

/// `chord logits`.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["prompt", "ids"]))]
pub struct Args {
    #[arg(value_name = "MODEL")]
    pub model: String,
    #[arg(long)]
    pub prompt: Option<String>,
    /// Token ids, separated by commas or spaces.
    #[arg(long)]
    pub ids: Option<String>,
    /// Parse special-token text in --prompt.
    #[arg(long)]
    pub special: bool,
    #[arg(long, value_name = "FILE")]
    pub out: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub fn run(a: &Args) -> Result<(), Fail> {
    let mut engine = load_engine(&a.model, &a.load)?;
    let ids = match (&a.ids, &a.prompt) {
        (Some(ids), None) => parse_ids(ids)?,
        (None, Some(p)) => engine.tokenize(p, true, a.special)?,
        _ => return Err(Fail::Usage("give one of --ids or --prompt".into())),
    };
    let logits = engine.logits(&ids)?;
    let le: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    let out = &a.out;
    std::fs::write(out, &le).map_err(|e| Fail::Run(io_err(format!("writing {out}"))(e)))
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
