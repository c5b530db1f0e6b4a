//! `chord dequant MODEL TENSOR [--out FILE]`: a tensor as little-endian f32 (GGUF element order).

use crate::{io_err, write_stdout, Fail};
use wasm_chord::{gguf, quant, Error};

/// `chord dequant`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(value_name = "MODEL")]
    pub model: String,
    #[arg(value_name = "TENSOR")]
    pub tensor: String,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<String>,
}

pub fn run(a: &Args) -> Result<(), Fail> {
    dequant(&a.model, &a.tensor, a.out.as_deref())
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
