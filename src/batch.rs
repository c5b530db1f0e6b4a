//! Serving many requests on one model: a scheduler thread that owns the [`Engine`].
//!
//! On the CPU backend requests are batched continuously, as llama-server's parallel slots and
//! vLLM's continuous batching do: a request that arrives while others generate is prefilled
//! and joins the next decode step; every step runs one token of each active sequence through
//! [`CpuModel::forward_batch`] (each weight matrix read once for the whole batch, each sequence
//! attending over its own KV cache); a sequence that finishes leaves at once and frees its slot
//! for the next request in the queue. At most `parallel` sequences share a step.
//!
//! Each sequence samples, stops and decodes exactly as [`Engine::generate`] does (same sampler,
//! stop strings, end-of-generation tokens and UTF-8-safe streaming), so its output does not
//! depend on who else is in the batch.
//!
//! On the GPU backend the scheduler runs one request at a time through [`Engine::generate`]
//! (queued requests wait their turn).
//!
//! Requests report through a callback that runs on the scheduler thread: first
//! [`Event::Started`] (or [`Event::Failed`] for a bad request), then [`Event::Token`]s, then
//! [`Event::Done`]. Answering [`Control::Stop`] (a client that went away) cancels the request
//! and frees its slot.

use crate::cpu::batch::BatchRow;
use crate::cpu::{CpuModel, KvCache};
use crate::engine::{Control, Engine, FinishReason, GenerateOptions, Generation, StopMatcher};
use crate::sampling::Sampler;
use crate::tokenizer::chat_template::{ChatMessage, RenderOptions};
use crate::tokenizer::StreamDecoder;
use crate::{Error, Result};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

/// What to generate from.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// Chat messages, rendered with the model's template.
    Chat(Vec<ChatMessage>),
    /// Raw text (BOS added as the tokenizer asks).
    Text(String),
    /// Token ids as they are.
    Ids(Vec<u32>),
}

/// What a request's callback sees.
#[derive(Debug)]
pub enum Event {
    /// The prompt was accepted: generation starts.
    Started { prompt_tokens: usize },
    /// Text that became final with one generated token (may be empty).
    Token { id: u32, text: String },
    /// Finished (also after a cancel).
    Done(Generation),
    /// The request failed before or during generation.
    Failed(Error),
}

/// The callback of one request; answering `Stop` cancels it.
pub type OnEvent = Box<dyn FnMut(Event) -> Control + Send>;

struct Job {
    prompt: Prompt,
    opts: GenerateOptions,
    on_event: OnEvent,
}

/// Counters for `/health` and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Sequences generating now.
    pub active: AtomicUsize,
    /// Requests waiting for a slot.
    pub queued: AtomicUsize,
    /// Decode steps run, and the rows they held (rows / steps = mean batch size).
    pub steps: AtomicUsize,
    pub step_rows: AtomicUsize,
    /// The largest batch seen.
    pub max_batch: AtomicUsize,
}

#[derive(Clone, Debug)]
pub struct BatchOptions {
    /// Sequences per decode step at most (CPU backend); 1 or more.
    pub parallel: usize,
    /// KV-cache size per sequence at most (tokens).
    pub n_ctx: usize,
}

/// A handle on the scheduler thread; dropping every handle ends the thread once its queue is
/// done.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    pub stats: Arc<Stats>,
    pub n_ctx: usize,
    pub parallel: usize,
}

impl Batcher {
    /// Start the scheduler thread, which owns `engine` from now on.
    pub fn start(engine: Engine, opts: BatchOptions) -> Result<Batcher> {
        let (tx, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(Stats::default());
        let parallel = opts.parallel.max(1);
        let n_ctx = opts.n_ctx.max(2);
        let st = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("chord-batcher".into())
            .spawn(move || {
                let mut engine = engine;
                if engine.cpu_model().is_some() {
                    run_batched(&engine, rx, parallel, n_ctx, &st);
                } else {
                    run_serial(&mut engine, rx, n_ctx, &st);
                }
            })
            .map_err(|e| Error::io("starting the scheduler thread", e))?;
        Ok(Batcher {
            tx,
            stats,
            n_ctx,
            parallel,
        })
    }

    /// Queue a request. Its events arrive through `on_event` on the scheduler thread.
    pub fn submit(&self, prompt: Prompt, opts: GenerateOptions, on_event: OnEvent) -> Result<()> {
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        self.tx
            .send(Job {
                prompt,
                opts,
                on_event,
            })
            .map_err(|_| {
                self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                Error::InvalidRequest("the scheduler has stopped".into())
            })
    }
}

fn prompt_ids(engine: &Engine, prompt: &Prompt) -> Result<Vec<u32>> {
    let ids = match prompt {
        Prompt::Chat(m) => engine.chat_prompt_ids(m, &RenderOptions::default())?,
        Prompt::Text(t) => engine.tokenize(t, true, false)?,
        Prompt::Ids(ids) => ids.clone(),
    };
    if ids.is_empty() {
        return Err(Error::InvalidRequest("the prompt is empty".into()));
    }
    let n_vocab = engine.config().n_vocab;
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= n_vocab) {
        return Err(Error::TokenOutOfRange { id, n_vocab });
    }
    Ok(ids)
}

/// Cache size of one request: prompt + max_tokens, at most the server's context.
fn request_ctx(prompt: usize, opts: &GenerateOptions, n_ctx: usize) -> usize {
    let want = opts.n_ctx.unwrap_or(prompt + opts.max_tokens.max(1));
    want.min(n_ctx)
}

/// One sequence in the batch: its cache, sampler and text state, as `Engine::generate` keeps.
struct Slot<'t> {
    on_event: OnEvent,
    opts: GenerateOptions,
    prompt_len: usize,
    n_ctx: usize,
    cache: KvCache,
    sampler: Sampler,
    history: Vec<u32>,
    decoder: StreamDecoder<'t>,
    stops: StopMatcher,
    out: Generation,
    t_gen: Instant,
    /// The token the next step runs, at position `pos`; None once finished.
    next: Option<(u32, usize)>,
}

impl<'t> Slot<'t> {
    fn finish(&mut self, reason: FinishReason) {
        self.out.finish = reason;
        self.out.gen_ms = self.t_gen.elapsed().as_secs_f64() * 1e3;
        self.next = None;
        let g = self.out.clone();
        (self.on_event)(Event::Done(g));
    }

    fn emit(&mut self, id: u32, text: String) -> Control {
        (self.on_event)(Event::Token { id, text })
    }

    /// Sample from `logits` and handle the token (the body of `Engine::generate`'s loop):
    /// afterwards either `next` holds the step to run, or the sequence has finished.
    fn accept(&mut self, logits: &mut [f32], eog: &dyn Fn(u32) -> bool) {
        let id = self.sampler.sample(logits, &self.history);
        let i = self.out.ids.len();
        self.history.push(id);
        self.out.ids.push(id);
        if self.opts.stop_at_eog && eog(id) {
            let tail = self.stops.flush(&self.decoder.finish());
            self.out.text.push_str(&tail);
            self.emit(id, tail);
            return self.finish(FinishReason::Eog);
        }
        let piece = match self.decoder.push(id) {
            Ok(p) => p,
            Err(e) => {
                self.next = None;
                (self.on_event)(Event::Failed(e.into()));
                return;
            }
        };
        let (emit, hit) = self.stops.push(&piece);
        self.out.text.push_str(&emit);
        let control = self.emit(id, emit);
        if let Some(s) = hit {
            return self.finish(FinishReason::StopString(s));
        }
        if control == Control::Stop {
            return self.finish(FinishReason::Cancelled);
        }
        let pos = self.prompt_len + i;
        if i + 1 == self.opts.max_tokens || pos + 1 > self.n_ctx {
            let tail = self.stops.flush(&self.decoder.finish());
            self.out.text.push_str(&tail);
            if !tail.is_empty() {
                self.emit(id, tail);
            }
            return self.finish(FinishReason::Length);
        }
        self.next = Some((id, pos));
    }
}

/// Prefill a new request; None if it failed or was cancelled at once.
fn admit<'t>(engine: &'t Engine, model: &CpuModel, job: Job, n_ctx: usize) -> Option<Slot<'t>> {
    let Job {
        prompt,
        opts,
        mut on_event,
    } = job;
    let ids = match prompt_ids(engine, &prompt) {
        Ok(ids) => ids,
        Err(e) => {
            on_event(Event::Failed(e));
            return None;
        }
    };
    let n_ctx = request_ctx(ids.len(), &opts, n_ctx);
    if ids.len() >= n_ctx {
        on_event(Event::Failed(Error::ContextFull {
            needed: ids.len() + 1,
            n_ctx,
        }));
        return None;
    }
    if opts.max_tokens == 0 {
        on_event(Event::Failed(Error::InvalidRequest(
            "max_tokens must be at least 1".into(),
        )));
        return None;
    }
    if on_event(Event::Started {
        prompt_tokens: ids.len(),
    }) == Control::Stop
    {
        return None;
    }
    let mut cache = KvCache::new(&model.cfg, n_ctx);
    let t0 = Instant::now();
    let mut logits = match model.forward(&ids, 0, &mut cache) {
        Ok(l) => l,
        Err(e) => {
            on_event(Event::Failed(e));
            return None;
        }
    };
    let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut slot = Slot {
        on_event,
        prompt_len: ids.len(),
        n_ctx,
        cache,
        sampler: Sampler::new(opts.sampler.clone()),
        history: ids.clone(),
        decoder: engine.tokenizer.stream_decoder(false),
        stops: StopMatcher::new(&opts.stop),
        out: Generation {
            prompt_ids: ids,
            ids: vec![],
            text: String::new(),
            finish: FinishReason::Length,
            prompt_ms,
            gen_ms: 0.0,
        },
        opts,
        t_gen: Instant::now(),
        next: None,
    };
    let vocab = engine.tokenizer.vocab();
    slot.accept(&mut logits, &|id| vocab.is_eog(id));
    slot.next.is_some().then_some(slot)
}

fn run_batched(
    engine: &Engine,
    rx: mpsc::Receiver<Job>,
    parallel: usize,
    n_ctx: usize,
    stats: &Stats,
) {
    let Some(model) = engine.cpu_model() else {
        return;
    };
    let vocab = engine.tokenizer.vocab();
    let eog = |id| vocab.is_eog(id);
    let n_vocab = model.cfg.n_vocab;
    let mut slots: Vec<Slot> = Vec::new();
    let mut queue: VecDeque<Job> = VecDeque::new();
    loop {
        if slots.is_empty() && queue.is_empty() {
            match rx.recv() {
                Ok(j) => queue.push_back(j),
                Err(_) => return,
            }
        }
        while let Ok(j) = rx.try_recv() {
            queue.push_back(j);
        }
        // New requests join before the next step, while there are free slots.
        while slots.len() < parallel {
            let Some(job) = queue.pop_front() else { break };
            stats.queued.fetch_sub(1, Ordering::SeqCst);
            stats.active.fetch_add(1, Ordering::SeqCst);
            match admit(engine, model, job, n_ctx) {
                Some(s) => slots.push(s),
                None => {
                    stats.active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        if slots.is_empty() {
            continue;
        }
        let mut rows: Vec<BatchRow> = slots
            .iter_mut()
            .filter_map(|s| {
                let (token, pos) = s.next?;
                Some(BatchRow {
                    token,
                    pos,
                    cache: &mut s.cache,
                })
            })
            .collect();
        let n = rows.len();
        stats.steps.fetch_add(1, Ordering::Relaxed);
        stats.step_rows.fetch_add(n, Ordering::Relaxed);
        stats.max_batch.fetch_max(n, Ordering::Relaxed);
        match model.forward_batch(&mut rows) {
            Ok(mut logits) => {
                for (s, l) in slots.iter_mut().zip(logits.chunks_exact_mut(n_vocab)) {
                    s.accept(l, &eog);
                }
            }
            Err(e) => {
                for s in slots.iter_mut() {
                    s.next = None;
                    (s.on_event)(Event::Failed(Error::InvalidRequest(format!(
                        "decode step failed: {e}"
                    ))));
                }
            }
        }
        // Finished sequences free their slot at once.
        let before = slots.len();
        slots.retain(|s| s.next.is_some());
        stats
            .active
            .fetch_sub(before - slots.len(), Ordering::SeqCst);
    }
}

fn run_serial(engine: &mut Engine, rx: mpsc::Receiver<Job>, n_ctx: usize, stats: &Stats) {
    while let Ok(job) = rx.recv() {
        stats.queued.fetch_sub(1, Ordering::SeqCst);
        stats.active.fetch_add(1, Ordering::SeqCst);
        serve_one(engine, job, n_ctx);
        stats.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One request through `Engine::generate` (the GPU backend: one sequence at a time).
fn serve_one(engine: &mut Engine, job: Job, n_ctx: usize) {
    let Job {
        prompt,
        mut opts,
        mut on_event,
    } = job;
    let ids = match prompt_ids(engine, &prompt) {
        Ok(ids) => ids,
        Err(e) => {
            on_event(Event::Failed(e));
            return;
        }
    };
    let limit = request_ctx(ids.len(), &opts, n_ctx);
    let limit = if engine.backend() == crate::engine::Backend::Gpu {
        // The GPU cache was sized at load.
        limit.min(n_ctx)
    } else {
        limit
    };
    if ids.len() >= limit {
        on_event(Event::Failed(Error::ContextFull {
            needed: ids.len() + 1,
            n_ctx: limit,
        }));
        return;
    }
    if opts.max_tokens == 0 {
        on_event(Event::Failed(Error::InvalidRequest(
            "max_tokens must be at least 1".into(),
        )));
        return;
    }
    if on_event(Event::Started {
        prompt_tokens: ids.len(),
    }) == Control::Stop
    {
        return;
    }
    opts.n_ctx = Some(limit);
    let r = engine.generate(&ids, &opts, &mut |ev| {
        on_event(Event::Token {
            id: ev.id,
            text: ev.text.to_owned(),
        })
    });
    match r {
        Ok(g) => on_event(Event::Done(g)),
        Err(e) => on_event(Event::Failed(e)),
    };
}
