//! Serving many requests on one model: a scheduler thread that owns the [`Engine`].
//!
//! On the CPU backend requests are batched continuously, as llama-server's parallel slots and
//! vLLM's continuous batching do: a request that arrives while others generate is prefilled
//! and joins the next decode step; every step runs one token of each active sequence through
//! [`CpuModel::forward_batch`] (each weight matrix read once for the whole batch, each sequence
//! attending over its own KV cache); a sequence that finishes leaves at once and frees its slot
//! for the next request in the queue. At most `parallel` sequences share a step.
//!
//! Each sequence samples, stops, follows its grammar and decodes exactly as
//! [`Engine::generate`] does (same sampler, stop strings, end-of-generation tokens, constrained
//! decoding and UTF-8-safe streaming), so its output does not depend on who else is in the
//! batch (to the bit where the matrix kernels give every token's row in one order whatever the
//! batch; see [`crate::cpu::batch`]). On x86_64 with AMX that holds too: the tiles (16 tokens
//! and more) and their one-token twins give the same bits (`cpu::kernels::x86_amx_one`).
//!
//! Every slot keeps its KV cache between requests, with the ids its positions hold. A new
//! request takes the free slot whose cache shares the longest prefix with its prompt (else the
//! one free longest), and prefills only what follows that prefix, as the engine's own prefix
//! reuse does for one conversation (llama-server picks its slots the same way): a chat that
//! sends its growing history again and again is prefilled by the turn, not from the start.
//! [`Generation::cached_tokens`] says how many prompt tokens came from the cache.
//!
//! On the GPU backend with `parallel` > 1 the same scheduler steps a [`GpuBatch`]: each slot
//! has a KV cache region on the device, a prompt is prefilled through the model's own prefill
//! and copied into its slot, and each decode step runs one token of every active sequence in
//! one submission (the matrices through matmat.wgsl, read once for the batch; each token's KV
//! store and attention over its own slot), the logits of every row read back and sampled on
//! the host by each sequence's own sampler. A sequence's output there equals its output alone
//! through the same batched step, bit for bit ([`crate::gpu::GpuBatch`]); it may differ in
//! the last bits from [`Engine::generate`]'s fused single-sequence kernels. With `parallel` 1,
//! and for models with recurrent layers (LFM2, Qwen3.5, whose state has no slots on the GPU),
//! the scheduler runs one request at a time through [`Engine::generate`] (queued requests wait
//! their turn; the engine's one cache gives the same prefix reuse).
//!
//! Requests report through a callback that runs on the scheduler thread: first
//! [`Event::Started`] (or [`Event::Failed`] for a bad request), then [`Event::Token`]s, then
//! [`Event::Done`]. Answering [`Control::Stop`] (a client that went away) cancels the request
//! and frees its slot.

use crate::chat::{ChatMessage, RenderOptions};
use crate::constrain::{Constrainer, ConstraintCompiler};
use crate::cpu::batch::BatchRow;
use crate::cpu::{CpuModel, KvCache};
use crate::engine::{
    common_prefix, Control, Engine, FinishReason, GenerateOptions, Generation, StopMatcher,
};
use crate::gpu::{BatchToken, GpuBatch, GpuModel};
use crate::sampling::{apply_token_mask, Sampler};
use crate::tokenizer::StreamDecoder;
use crate::{Error, Result};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// How a chat prompt is rendered (its `tools`, ...).
    render: RenderOptions,
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
    /// Sequences per decode step at most; 1 or more (on the GPU, 1 runs requests one at a time
    /// through [`Engine::generate`]).
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
    /// Sequences decoded together at most: `BatchOptions::parallel`, or 1 when batching could
    /// not be set up (see `serial_reason`).
    pub parallel: usize,
    /// Why requests run one at a time although more were asked for (`None` when they don't).
    pub serial_reason: Option<String>,
    /// The source of the model's chat template (`None` when it has none that works), for
    /// requests that depend on it, such as tools.
    pub chat_template: Option<Arc<str>>,
}

/// A sequence's place in [`Stats::active`]: counted in when it is admitted, and out once, just
/// before its last event (Done or Failed) reaches the caller, or when it ends without one (a
/// request cancelled at `Started`). So a caller woken by the last event already sees it gone.
#[derive(Clone)]
struct Active {
    stats: Arc<Stats>,
    out: Arc<AtomicBool>,
}

impl Active {
    /// Counts `job` in, and gives it back with its callback wrapped by [`Active::around`].
    fn enter(stats: &Arc<Stats>, job: Job) -> (Active, Job) {
        stats.active.fetch_add(1, Ordering::SeqCst);
        let active = Active {
            stats: Arc::clone(stats),
            out: Arc::new(AtomicBool::new(false)),
        };
        let job = Job {
            on_event: active.around(job.on_event),
            ..job
        };
        (active, job)
    }

    fn leave(&self) {
        if !self.out.swap(true, Ordering::SeqCst) {
            self.stats.active.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// `on_event`, leaving `active` before it delivers the sequence's last event.
    fn around(&self, mut on_event: OnEvent) -> OnEvent {
        let me = self.clone();
        Box::new(move |ev| {
            if matches!(ev, Event::Done(_) | Event::Failed(_)) {
                me.leave();
            }
            on_event(ev)
        })
    }
}

impl Batcher {
    /// Start the scheduler thread, which owns `engine` from now on.
    pub fn start(engine: Engine, opts: BatchOptions) -> Result<Batcher> {
        let (tx, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(Stats::default());
        let parallel = opts.parallel.max(1);
        let n_ctx = opts.n_ctx.max(2);
        let chat_template = engine.chat_template().ok().map(|t| Arc::from(t.source()));
        let st = Arc::clone(&stats);
        // On the GPU, batching needs the slots' caches on the device; where they cannot be made
        // the scheduler serves one request at a time, and `serial_reason` says why.
        let (gpu_batch, serial_reason) = match engine.gpu_model() {
            Some(m) if parallel > 1 => match GpuBatch::new(m, parallel, n_ctx) {
                Ok(b) => (Some(b), None),
                Err(e) => (None, Some(format!("no batched GPU decoding: {e}"))),
            },
            _ => (None, None),
        };
        let parallel = if serial_reason.is_some() { 1 } else { parallel };
        std::thread::Builder::new()
            .name("chord-batcher".into())
            .spawn(move || {
                let mut engine = engine;
                if gpu_batch.is_some() {
                    // The slots' prefill uses the engine's cache as its workspace.
                    engine.forget_prefix();
                }
                if engine.cpu_model().is_some() || gpu_batch.is_some() {
                    run_batched(&engine, gpu_batch, rx, parallel, n_ctx, &st);
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
            serial_reason,
            chat_template,
        })
    }

    /// Queue a request. Its events arrive through `on_event` on the scheduler thread.
    pub fn submit(&self, prompt: Prompt, opts: GenerateOptions, on_event: OnEvent) -> Result<()> {
        self.submit_with(prompt, RenderOptions::default(), opts, on_event)
    }

    /// [`submit`](Self::submit), with a chat prompt rendered with `render` (tool definitions,
    /// template variables); other prompts ignore it.
    pub fn submit_with(
        &self,
        prompt: Prompt,
        render: RenderOptions,
        opts: GenerateOptions,
        on_event: OnEvent,
    ) -> Result<()> {
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        self.tx
            .send(Job {
                prompt,
                render,
                opts,
                on_event,
            })
            .map_err(|_| {
                self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                Error::InvalidRequest("the scheduler has stopped".into())
            })
    }
}

fn prompt_ids(engine: &Engine, prompt: &Prompt, render: &RenderOptions) -> Result<Vec<u32>> {
    let ids = match prompt {
        Prompt::Chat(m) => engine.chat_prompt_ids(m, render)?,
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

/// A slot's KV cache, kept between requests: `ids` are the tokens whose keys and values
/// positions `0..ids.len()` hold.
struct Kept {
    cache: SlotCache,
    ids: Vec<u32>,
    /// The length of the last prompt run in this cache.
    prompt_len: usize,
}

/// One sequence in the batch: its cache, sampler, grammar and text state, as
/// `Engine::generate` keeps them.
struct Slot<'t> {
    on_event: OnEvent,
    /// Its place in `Stats::active` (left before its last event).
    active: Active,
    opts: GenerateOptions,
    prompt_len: usize,
    n_ctx: usize,
    kept: Kept,
    sampler: Sampler,
    constraint: Option<Constrainer>,
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

    fn fail(&mut self, e: Error) {
        self.next = None;
        (self.on_event)(Event::Failed(e));
    }

    fn emit(&mut self, id: u32, text: String) -> Control {
        (self.on_event)(Event::Token { id, text })
    }

    /// The body of `Engine::generate`'s loop: mask `logits` by the grammar, sample, and handle
    /// the token; afterwards either `next` holds the step to run, or the sequence has finished.
    fn accept(&mut self, logits: &mut [f32], eog: &dyn Fn(u32) -> bool) {
        if let Some(c) = &mut self.constraint {
            match c.mask() {
                Ok(mask) => apply_token_mask(logits, mask),
                Err(e) => return self.fail(e.into()),
            }
        }
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
        if let Some(c) = &mut self.constraint {
            if let Err(e) = c.commit(id) {
                return self.fail(e.into());
            }
        }
        let piece = match self.decoder.push(id) {
            Ok(p) => p,
            Err(e) => return self.fail(e.into()),
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
        let complete = self.constraint.as_ref().is_some_and(Constrainer::is_done);
        if complete || i + 1 == self.opts.max_tokens || pos + 1 > self.n_ctx {
            let tail = self.stops.flush(&self.decoder.finish());
            self.out.text.push_str(&tail);
            if !tail.is_empty() {
                self.emit(id, tail);
            }
            let reason = if complete {
                FinishReason::Eog
            } else {
                FinishReason::Length
            };
            return self.finish(reason);
        }
        self.next = Some((id, pos));
    }
}

/// A slot's KV cache: the CPU's, or a slot of the [`GpuBatch`].
enum SlotCache {
    Cpu(KvCache),
    Gpu(usize),
}

impl SlotCache {
    fn resume_point(&self, n: usize) -> usize {
        match self {
            SlotCache::Cpu(c) => c.resume_point(n),
            SlotCache::Gpu(_) => n,
        }
    }
}

/// The forward pass the scheduler steps.
enum Model<'e> {
    Cpu(&'e CpuModel),
    Gpu(&'e GpuModel, Box<GpuBatch>),
}

/// What the batched scheduler keeps between steps.
struct Scheduler<'e> {
    engine: &'e Engine,
    model: Model<'e>,
    /// Context size per sequence at most.
    n_ctx: usize,
    /// The caches of the free slots, the longest free first.
    free: VecDeque<Kept>,
    /// Caches made so far (in use or free); at most `parallel`.
    caches: usize,
    parallel: usize,
    /// llguidance's tables for this vocabulary, built at the first constrained request.
    compiler: Option<ConstraintCompiler>,
}

impl<'e> Scheduler<'e> {
    fn compile(&mut self, opts: &GenerateOptions) -> Result<Option<Constrainer>> {
        let Some(g) = &opts.grammar else {
            return Ok(None);
        };
        if self.compiler.is_none() {
            let n_vocab = self.engine.config().n_vocab;
            let env = crate::constrain::token_env(&self.engine.tokenizer, n_vocab)?;
            self.compiler = Some(ConstraintCompiler::new(&env)?);
        }
        match &self.compiler {
            Some(c) => Ok(Some(c.compile(g)?)),
            None => Ok(None),
        }
    }

    /// The cache for a prompt of `ids`, with the length of the prefix it already holds:
    /// a free cache this prompt extends (it starts with the cache's last prompt, or shares
    /// more than half of what the cache holds: the same conversation, grown by a turn or
    /// edited near its end), the longest such; else a new cache while fewer
    /// than `parallel` exist (nothing is lost); else the free cache that shares the longest
    /// prefix (the longest free on a tie), whose other tokens are overwritten.
    fn take_cache(&mut self, ids: &[u32], n_ctx: usize) -> Result<(Kept, usize)> {
        // At least the last prompt token runs again: its logits start generation.
        // A recurrent state resumes where it stands or from a checkpoint.
        let reuse = |k: &Kept| {
            k.cache
                .resume_point(common_prefix(&k.ids, ids).min(ids.len() - 1))
        };
        let extends = |k: &Kept| {
            let common = common_prefix(&k.ids, ids);
            common > 0 && (common >= k.prompt_len || 2 * common > k.ids.len())
        };
        let longest = |only_extends: bool| {
            (0..self.free.len())
                .filter(|&i| !only_extends || extends(&self.free[i]))
                .max_by_key(|&i| (reuse(&self.free[i]), usize::MAX - i))
        };
        let pick = match longest(true) {
            Some(i) => Some(i),
            None if self.caches < self.parallel => None,
            None => longest(false),
        };
        let (mut kept, cached) = match pick.and_then(|i| self.free.remove(i)) {
            Some(k) => {
                let n = reuse(&k);
                (k, n)
            }
            None => {
                let cache = match &self.model {
                    Model::Cpu(m) => SlotCache::Cpu(KvCache::try_new(&m.cfg, n_ctx)?),
                    Model::Gpu(..) => SlotCache::Gpu(self.caches),
                };
                let k = Kept {
                    cache,
                    ids: vec![],
                    prompt_len: 0,
                };
                self.caches += 1;
                (k, 0)
            }
        };
        kept.ids.truncate(cached);
        let grown = match (&mut kept.cache, &self.model) {
            (SlotCache::Cpu(c), _) => c.try_grow(n_ctx),
            (SlotCache::Gpu(_), Model::Gpu(_, b)) if n_ctx > b.n_ctx() => Err(Error::ContextFull {
                needed: n_ctx,
                n_ctx: b.n_ctx(),
            }),
            (SlotCache::Gpu(_), _) => Ok(()),
        };
        if let Err(e) = grown {
            // Keep the slot's cache for later requests.
            self.free.push_back(kept);
            return Err(e);
        }
        Ok((kept, cached))
    }

    /// Prefill a new request (after the prefix its slot's cache holds); None if it failed or
    /// was cancelled at once.
    fn admit(&mut self, job: Job, active: Active) -> Option<Slot<'e>> {
        let Job {
            prompt,
            render,
            opts,
            mut on_event,
        } = job;
        let ids = match prompt_ids(self.engine, &prompt, &render) {
            Ok(ids) => ids,
            Err(e) => {
                on_event(Event::Failed(e));
                return None;
            }
        };
        let n_ctx = request_ctx(ids.len(), &opts, self.n_ctx);
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
        // An unusable grammar is an error before any token (as in `Engine::generate`).
        let constraint = match self.compile(&opts) {
            Ok(c) => c,
            Err(e) => {
                on_event(Event::Failed(e));
                return None;
            }
        };
        if on_event(Event::Started {
            prompt_tokens: ids.len(),
        }) == Control::Stop
        {
            return None;
        }
        let (mut kept, cached) = match self.take_cache(&ids, n_ctx) {
            Ok(k) => k,
            Err(e) => {
                on_event(Event::Failed(e));
                return None;
            }
        };
        let t0 = Instant::now();
        let r = match (&self.model, &mut kept.cache) {
            (Model::Cpu(m), SlotCache::Cpu(c)) => m.prefill(&ids[cached..], cached, c),
            (Model::Gpu(m, b), &mut SlotCache::Gpu(slot)) => {
                crate::engine::block_on(b.prefill(m, slot, &ids, cached))
            }
            _ => Err(Error::InvalidRequest("a slot of another backend".into())),
        };
        let mut logits = match r {
            Ok(l) => l,
            Err(e) => {
                kept.ids.clear();
                self.free.push_back(kept);
                on_event(Event::Failed(e));
                return None;
            }
        };
        kept.ids = ids.clone();
        kept.prompt_len = ids.len();
        let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
        let engine = self.engine;
        let mut slot = Slot {
            on_event,
            active,
            prompt_len: ids.len(),
            n_ctx,
            kept,
            sampler: Sampler::new(opts.sampler.clone()),
            constraint,
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
                cached_tokens: cached,
            },
            opts,
            t_gen: Instant::now(),
            next: None,
        };
        let vocab = engine.tokenizer.vocab();
        slot.accept(&mut logits, &|id| vocab.is_eog(id));
        if slot.next.is_some() {
            Some(slot)
        } else {
            self.free.push_back(slot.kept);
            None
        }
    }
}

fn run_batched(
    engine: &Engine,
    gpu_batch: Option<GpuBatch>,
    rx: mpsc::Receiver<Job>,
    parallel: usize,
    n_ctx: usize,
    stats: &Arc<Stats>,
) {
    let (model, parallel, n_ctx) = match (engine.cpu_model(), engine.gpu_model(), gpu_batch) {
        (Some(m), ..) => (Model::Cpu(m), parallel, n_ctx),
        (None, Some(m), Some(b)) => {
            let (p, n) = (parallel.min(b.max_rows()), b.n_ctx());
            (Model::Gpu(m, Box::new(b)), p, n)
        }
        _ => return,
    };
    let vocab = engine.tokenizer.vocab();
    let eog = |id| vocab.is_eog(id);
    let n_vocab = engine.config().n_vocab;
    let mut sched = Scheduler {
        engine,
        model,
        n_ctx,
        free: VecDeque::new(),
        caches: 0,
        parallel,
        compiler: None,
    };
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
            let (active, job) = Active::enter(stats, job);
            match sched.admit(job, active.clone()) {
                Some(s) => slots.push(s),
                None => active.leave(),
            }
        }
        if slots.is_empty() {
            continue;
        }
        let n = slots.iter().filter(|s| s.next.is_some()).count();
        stats.steps.fetch_add(1, Ordering::Relaxed);
        stats.step_rows.fetch_add(n, Ordering::Relaxed);
        stats.max_batch.fetch_max(n, Ordering::Relaxed);
        match step(&sched.model, &mut slots) {
            Ok(mut logits) => {
                for (s, l) in slots.iter_mut().zip(logits.chunks_exact_mut(n_vocab)) {
                    // The token just run is in the cache now.
                    if let Some((id, _)) = s.next {
                        s.kept.ids.push(id);
                    }
                    s.accept(l, &eog);
                }
            }
            Err(e) => {
                for s in slots.iter_mut() {
                    s.kept.ids.clear();
                    s.fail(Error::InvalidRequest(format!("decode step failed: {e}")));
                }
            }
        }
        // Finished sequences free their slot at once; their cache waits for the next request.
        let mut i = 0;
        while i < slots.len() {
            if slots[i].next.is_some() {
                i += 1;
            } else {
                let s = slots.swap_remove(i);
                s.active.leave();
                sched.free.push_back(s.kept);
            }
        }
    }
}

/// One decode step of every active slot (all are: finished ones left after the last step);
/// (n, n_vocab) logits, row `i` for `slots[i]`.
fn step(model: &Model, slots: &mut [Slot]) -> Result<Vec<f32>> {
    match model {
        Model::Cpu(m) => {
            let mut rows = Vec::with_capacity(slots.len());
            for s in slots.iter_mut() {
                let (Some((token, pos)), SlotCache::Cpu(cache)) = (s.next, &mut s.kept.cache)
                else {
                    return Err(Error::InvalidRequest("a slot without a CPU cache".into()));
                };
                rows.push(BatchRow { token, pos, cache });
            }
            m.forward_batch(&mut rows)
        }
        Model::Gpu(m, b) => {
            let mut toks = Vec::with_capacity(slots.len());
            for s in slots.iter() {
                let (Some((token, pos)), &SlotCache::Gpu(slot)) = (s.next, &s.kept.cache) else {
                    return Err(Error::InvalidRequest("a slot without a GPU cache".into()));
                };
                toks.push(BatchToken { token, slot, pos });
            }
            crate::engine::block_on(b.decode(m, &toks))
        }
    }
}

fn run_serial(engine: &mut Engine, rx: mpsc::Receiver<Job>, n_ctx: usize, stats: &Arc<Stats>) {
    while let Ok(job) = rx.recv() {
        stats.queued.fetch_sub(1, Ordering::SeqCst);
        let (active, job) = Active::enter(stats, job);
        serve_one(engine, job, n_ctx);
        active.leave();
    }
}

/// One request through `Engine::generate` (the GPU backend: one sequence at a time).
fn serve_one(engine: &mut Engine, job: Job, n_ctx: usize) {
    let Job {
        prompt,
        render,
        mut opts,
        mut on_event,
    } = job;
    let ids = match prompt_ids(engine, &prompt, &render) {
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
