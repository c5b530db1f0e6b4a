//! Token samplers with an explicit, seedable RNG.
//!
//! Chain (llama.cpp's default order): penalties → top-k → top-p → min-p → temperature → draw.
//! Temperature 0 (or below) is greedy: the arg-max after penalties.

/// Sampling settings; the defaults are greedy with no penalties.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1 = off).
    pub top_p: f32,
    /// Drop tokens below min_p × the top probability (0 = off).
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recent tokens (1 = off).
    pub repeat_penalty: f32,
    /// Subtract from the logits of tokens seen recently (0 = off).
    pub presence_penalty: f32,
    /// Subtract count × this from the logits of recent tokens (0 = off).
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}

/// xoshiro256** seeded through splitmix64: small, fast, and the same on every platform.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

pub struct Sampler {
    pub cfg: SamplerConfig,
    rng: Rng,
}

/// Index of the largest value (the first on ties); 0 for an empty slice.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Self {
        let rng = Rng::new(cfg.seed);
        Sampler { cfg, rng }
    }

    /// Apply repetition, presence and frequency penalties for the last `penalty_last_n` of `history`.
    pub fn apply_penalties(&self, logits: &mut [f32], history: &[u32]) {
        let c = &self.cfg;
        if c.repeat_penalty == 1.0 && c.presence_penalty == 0.0 && c.frequency_penalty == 0.0 {
            return;
        }
        let recent = &history[history.len().saturating_sub(c.penalty_last_n)..];
        let mut counts: std::collections::HashMap<u32, u32> = Default::default();
        for &t in recent {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &n) in &counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            if c.repeat_penalty != 1.0 && c.repeat_penalty > 0.0 {
                *l = if *l > 0.0 {
                    *l / c.repeat_penalty
                } else {
                    *l * c.repeat_penalty
                };
            }
            *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }

    /// Choose the next token from `logits` (modified in place by the penalties).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.apply_penalties(logits, history);
        let rng = &mut self.rng;
        choose(&self.cfg, logits, || rng.next_f64())
    }

    /// The uniform number the next sampled token would draw (as [`Sampler::sample`] draws one
    /// per token when the temperature is above 0): for a sampler that runs elsewhere (the GPU's
    /// `sample.wgsl`) on this sampler's seeded stream.
    pub fn next_uniform(&mut self) -> f64 {
        self.rng.next_f64()
    }
}

/// The chain after the penalties (top-k → top-p → min-p → temperature → draw) over `logits`,
/// with `draw` giving the uniform number in [0, 1) (called once, only when the temperature is
/// above 0 and some logit is finite).
pub fn choose(c: &SamplerConfig, logits: &[f32], draw: impl FnOnce() -> f64) -> u32 {
    if c.temperature <= 0.0 || logits.len() < 2 {
        return argmax(logits) as u32;
    }
    // Candidates sorted by logit, highest first (ties by id, for determinism).
    let mut cand: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i as u32, l))
        .collect();
    if cand.is_empty() {
        return argmax(logits) as u32;
    }
    let k = if c.top_k > 0 {
        c.top_k.min(cand.len())
    } else {
        cand.len()
    };
    let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k < cand.len() {
        cand.select_nth_unstable_by(k - 1, by_logit);
        cand.truncate(k);
    }
    cand.sort_by(by_logit);
    // Probabilities at temperature 1 for top-p and min-p (as llama.cpp's chain does).
    let probs = |cand: &[(u32, f32)], temp: f32| -> Vec<f64> {
        let max = f64::from(cand[0].1);
        let e: Vec<f64> = cand
            .iter()
            .map(|&(_, l)| ((f64::from(l) - max) / f64::from(temp)).exp())
            .collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|x| x / s).collect()
    };
    if c.top_p < 1.0 {
        let p = probs(&cand, 1.0);
        let mut acc = 0.0;
        let mut keep = cand.len();
        for (i, &pi) in p.iter().enumerate() {
            acc += pi;
            if acc >= f64::from(c.top_p) {
                keep = i + 1;
                break;
            }
        }
        cand.truncate(keep.max(1));
    }
    if c.min_p > 0.0 {
        let p = probs(&cand, 1.0);
        let floor = p[0] * f64::from(c.min_p);
        let keep = p.iter().take_while(|&&x| x >= floor).count();
        cand.truncate(keep.max(1));
    }
    let p = probs(&cand, c.temperature);
    let r = draw();
    let mut acc = 0.0;
    for (i, &pi) in p.iter().enumerate() {
        acc += pi;
        if r < acc {
            return cand[i].0;
        }
    }
    cand[cand.len() - 1].0
}

/// Constrained decoding on the CPU: sets the logit of every token whose bit is clear in `mask`
/// (bit `i % 32` of word `i / 32` for token `i`, as [`crate::constrain::Constrainer::mask`]
/// gives it) to −∞, so no sampler can choose it. Tokens past the mask's words are disallowed.
pub fn apply_token_mask(logits: &mut [f32], mask: &[u32]) {
    for (w, chunk) in logits.chunks_mut(32).enumerate() {
        let word = mask.get(w).copied().unwrap_or(0);
        if word == u32::MAX {
            continue;
        }
        for (b, l) in chunk.iter_mut().enumerate() {
            if word & (1 << b) == 0 {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_mask_leaves_only_allowed_tokens() {
        let mut l: Vec<f32> = (0..70).map(|i| i as f32).collect();
        // Allowed: 1, 33 and 64 (word 2 is bit 0); the highest logit (69) is masked.
        apply_token_mask(&mut l, &[1 << 1, 1 << 1, 1]);
        let allowed: Vec<usize> = (0..70).filter(|&i| l[i].is_finite()).collect();
        assert_eq!(allowed, vec![1, 33, 64]);
        assert_eq!(argmax(&l), 64);
        let mut s = Sampler::new(SamplerConfig {
            temperature: 2.0,
            seed: 3,
            ..Default::default()
        });
        for _ in 0..50 {
            let mut m = l.clone();
            assert!([1, 33, 64].contains(&s.sample(&mut m, &[])));
        }
        // A short mask disallows the rest.
        let mut l = vec![0.0f32; 40];
        apply_token_mask(&mut l, &[u32::MAX]);
        assert!(l[..32].iter().all(|x| x.is_finite()));
        assert!(l[32..].iter().all(|x| *x == f32::NEG_INFINITY));
    }

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, 2.9]
    }

    #[test]
    fn greedy_takes_argmax() {
        let mut s = Sampler::new(SamplerConfig::default());
        assert_eq!(s.sample(&mut logits(), &[]), 1);
    }

    #[test]
    fn penalties_change_the_choice() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 1.5,
            ..Default::default()
        });
        assert_eq!(s.sample(&mut logits(), &[1]), 4);
        let mut s = Sampler::new(SamplerConfig {
            presence_penalty: 0.05,
            frequency_penalty: 0.1,
            ..Default::default()
        });
        let mut l = logits();
        assert_eq!(s.sample(&mut l, &[1]), 4);
        assert!((l[1] - 2.85).abs() < 1e-6);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_is_reproducible() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits(), &[]), 1);
        }
        let cfg = SamplerConfig {
            temperature: 1.5,
            seed: 42,
            ..Default::default()
        };
        let draw = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone());
            (0..50)
                .map(|_| s.sample(&mut logits(), &[]))
                .collect::<Vec<_>>()
        };
        let a = draw(&cfg);
        assert_eq!(a, draw(&cfg));
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 2);
        let b = draw(&SamplerConfig { seed: 43, ..cfg });
        assert_ne!(a, b);
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Probabilities ≈ [0.016, 0.43, 0.16, 0.010, 0.39] at t=1.
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_p: 0.5,
            seed: 7,
            ..Default::default()
        });
        for _ in 0..100 {
            let t = s.sample(&mut logits(), &[]);
            assert!(t == 1 || t == 4, "{t}");
        }
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            min_p: 0.5,
            seed: 7,
            ..Default::default()
        });
        for _ in 0..100 {
            let t = s.sample(&mut logits(), &[]);
            assert!(t == 1 || t == 4, "{t}");
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            seed: 1,
            ..Default::default()
        });
        let mut counts = [0usize; 2];
        for _ in 0..4000 {
            let t = s.sample(&mut [0.0, (3.0f32).ln()], &[]) as usize;
            counts[t] += 1;
        }
        // p = [0.25, 0.75]
        let frac = counts[1] as f64 / 4000.0;
        assert!((frac - 0.75).abs() < 0.03, "{frac}");
    }
}
