//! Rotary position embedding tables: a model property, shared by the CPU and GPU backends.
//!
//! `inv_freq[i] = base^(-2i/n_rot) · freq_scale / rope_freqs[i]`, in f64 (ggml's `rope_ext`
//! with `freq_factors`; `rope_freqs` is Llama 3's per-frequency divisor, Gemma 4's proportional
//! RoPE and Phi-3's LongRoPE short factors).

use super::Config;

/// Inverse frequencies of one rotary layout.
pub fn rope_inv_freq(
    n_rot: usize,
    base: f32,
    freq_scale: f32,
    rope_freqs: Option<&[f32]>,
) -> Vec<f64> {
    (0..n_rot / 2)
        .map(|i| {
            let f = f64::from(base).powf(-2.0 * i as f64 / n_rot as f64) * f64::from(freq_scale);
            match rope_freqs.and_then(|r| r.get(i)) {
                Some(&d) => f / f64::from(d),
                None => f,
            }
        })
        .collect()
}

/// The inverse frequencies of every layer (empty for a layer without RoPE).
#[derive(Clone, Debug)]
pub struct RopeTables {
    pub layers: Vec<Vec<f64>>,
}

impl RopeTables {
    pub fn new(cfg: &Config, rope_freqs: Option<&[f32]>) -> RopeTables {
        RopeTables {
            layers: cfg
                .layers
                .iter()
                .map(|l| {
                    let ff = if l.rope_freqs { rope_freqs } else { None };
                    let mut inv = rope_inv_freq(l.n_rot, l.rope_base, cfg.rope_freq_scale, ff);
                    if let Some(sections) = cfg.rope_sections {
                        for (i, f) in inv.iter_mut().enumerate() {
                            if !imrope_turns(&sections, i) {
                                *f = 0.0;
                            }
                        }
                    }
                    inv
                })
                .collect(),
        }
    }
}

/// Whether pair `i` of a multi-section rotary (ggml's IMROPE: sections interleaved t, h, w
/// over the pairs, the rest the fourth, e) turns for text, whose t, h and w positions are the
/// token's position and e's is 0 (llama.cpp's text positions for M-RoPE models).
fn imrope_turns(sections: &[usize; 4], i: usize) -> bool {
    let dims: usize = sections.iter().sum();
    if dims == 0 {
        return true;
    }
    let sector = i % dims;
    match sector % 3 {
        0 => sector < 3 * sections[0],
        1 => sector < 3 * sections[1],
        _ => sector < 3 * sections[2],
    }
}
