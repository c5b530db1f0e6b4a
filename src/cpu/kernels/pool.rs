//! The matmul threads: a rayon pool, and during a forward pass a *team* over it.
//!
//! The pool, where there is one: natively with the feature `threads` (a rayon pool of our own,
//! rebuilt when the count changes), on wasm32 with `web-threads` (rayon's global pool, whose
//! Web Workers JS starts once with `initThreadPool(n)`, before the first matmul).
//!
//! A forward pass forks a few hundred times (every matmul, attention's heads). Forked as rayon
//! jobs, each fork found the other threads asleep: rayon parks an idle thread after a few
//! dozen `yield_now` rounds, and on wasm32 `yield_now` does nothing, so a thread parks at once
//! and each fork paid an `Atomics.notify` wake-up (tens of µs) for a few hundred µs of work. So
//! [`run_on`] starts a team for the whole pass, as ggml's threadpool and llama2.c's OpenMP loops
//! keep their threads hot between operations: `n − 1` helper jobs spin on one atomic word,
//! and each fork ([`for_each_mut`] on the pass's thread) publishes its parts there; the
//! helpers and the pass's own thread claim parts one at a time, and the fork returns when all
//! are done. A helper idle for a while (a long serial stretch, or more threads than cores)
//! leaves, and the next fork sends a new one.
//!
//! The word: `epoch << 32 | len << 16 | next` (`next`: the first unclaimed part of the fork
//! `epoch`, which has `len` parts). Claiming a part is a compare-and-swap of `next + 1` on the
//! whole word, so a claim can never land on a newer fork than the one it read, and the fork's
//! closure (on the forking thread's stack) stays alive until its every claimed part is done.
//! Nested forks (attention's heads inside a batched step's per-sequence parts) run on the
//! thread that reached them, in order.

#[cfg(any(
    all(feature = "threads", not(target_arch = "wasm32")),
    all(feature = "web-threads", target_arch = "wasm32")
))]
pub(super) use threaded::*;

#[cfg(not(any(
    all(feature = "threads", not(target_arch = "wasm32")),
    all(feature = "web-threads", target_arch = "wasm32")
)))]
pub(super) use single::*;

#[cfg(any(
    all(feature = "threads", not(target_arch = "wasm32")),
    all(feature = "web-threads", target_arch = "wasm32")
))]
mod threaded {
    use rayon::prelude::*;
    use std::any::Any;
    use std::cell::{Cell, RefCell};
    use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    pub(crate) const ENABLED: bool = true;

    /// A fork's parts, as the team runs them: `run(i)` for part `i`.
    type Parts<'a> = &'a (dyn Fn(usize) + Sync);

    /// Idle spins after which a helper leaves the team (about a millisecond: far beyond the gaps
    /// between a pass's forks, short against a pass's serial stretches that could use the
    /// core). Natively it yields its core every [`YIELD_EVERY`] spins in between, so more
    /// threads than cores still make progress.
    const IDLE_SPINS: u32 = 1 << 16;
    #[cfg(not(target_arch = "wasm32"))]
    const YIELD_EVERY: u32 = 1 << 8;

    /// The most parts one team fork takes (`len` and `next` are 16-bit in the word).
    const MAX_PARTS: usize = u16::MAX as usize;

    struct Team {
        /// `epoch << 32 | len << 16 | next`; see the module doc.
        word: AtomicU64,
        /// The current fork's parts (points at a `Parts` on the forking thread's stack).
        parts: AtomicPtr<Parts<'static>>,
        /// Parts of the current fork done.
        done: AtomicUsize,
        /// Helpers sent and not yet gone.
        helpers: AtomicUsize,
        /// The pass is over: helpers leave.
        closed: AtomicBool,
        /// The first panic of a part run by a helper (natively; wasm32 aborts on panic).
        panic: Mutex<Option<Box<dyn Any + Send>>>,
    }

    std::thread_local! {
        /// The team this thread leads (inside [`run_on`]'s pass).
        static LEADS: RefCell<Option<Arc<Team>>> = const { RefCell::new(None) };
        /// This thread is inside a team's part, as its leader or a helper: a fork here runs in
        /// order, and a helper that lands here leaves (it would spin over the part below it).
        static IN_PART: Cell<bool> = const { Cell::new(false) };
    }

    /// Sets `IN_PART` for the life of the guard, restoring the previous value.
    struct InPart(bool);
    impl InPart {
        fn enter() -> Self {
            InPart(IN_PART.with(|c| c.replace(true)))
        }
    }
    impl Drop for InPart {
        fn drop(&mut self) {
            IN_PART.with(|c| c.set(self.0));
        }
    }

    fn unpack(w: u64) -> (usize, usize) {
        (((w >> 16) & 0xffff) as usize, (w & 0xffff) as usize)
    }

    impl Team {
        fn new() -> Self {
            Team {
                word: AtomicU64::new(0),
                parts: AtomicPtr::new(std::ptr::null_mut()),
                done: AtomicUsize::new(0),
                helpers: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                panic: Mutex::new(None),
            }
        }

        /// Claims the next part of the current fork: its index, or `None` when all are
        /// claimed.
        fn claim(&self) -> Option<usize> {
            let mut w = self.word.load(Ordering::Acquire);
            loop {
                let (len, next) = unpack(w);
                if next >= len {
                    return None;
                }
                match self
                    .word
                    .compare_exchange_weak(w, w + 1, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return Some(next),
                    Err(now) => w = now,
                }
            }
        }

        /// Runs claimed part `i` of the current fork (a helper's side).
        fn run_claimed(&self, i: usize) {
            // The fork stored `parts` before publishing the word this claim read, and cannot
            // end (nor store another) before this part is counted done.
            let parts = unsafe { &*self.parts.load(Ordering::Acquire) };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| parts(i))) {
                let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert(p);
            }
            self.done.fetch_add(1, Ordering::Release);
        }

        /// A helper: claims and runs parts until the pass ends or it has been idle for
        /// [`IDLE_SPINS`].
        fn help(&self) {
            // Landed on a thread that is inside this or another team's part (a rayon wait
            // there ran this job): spinning here would stall the part below.
            if IN_PART.with(|c| c.get()) || LEADS.with(|l| l.borrow().is_some()) {
                self.helpers.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            let _in = InPart::enter();
            let mut idle = 0u32;
            while !self.closed.load(Ordering::Acquire) && idle < IDLE_SPINS {
                if let Some(i) = self.claim() {
                    self.run_claimed(i);
                    idle = 0;
                    continue;
                }
                idle += 1;
                std::hint::spin_loop();
                #[cfg(not(target_arch = "wasm32"))]
                if idle.is_multiple_of(YIELD_EVERY) {
                    std::thread::yield_now();
                }
            }
            self.helpers.fetch_sub(1, Ordering::AcqRel);
        }

        /// Sends helpers until `want` are on the team (or on their way).
        fn recruit(self: &Arc<Self>, want: usize) {
            while self.helpers.load(Ordering::Acquire) < want {
                self.helpers.fetch_add(1, Ordering::AcqRel);
                let team = self.clone();
                rayon::spawn(move || team.help());
            }
        }

        /// Runs `run(i)` for `i in 0..len` over the team (the leader's side), `len ≤
        /// MAX_PARTS`.
        fn fork(self: &Arc<Self>, want: usize, len: usize, run: Parts) {
            self.recruit(want);
            let _in = InPart::enter();
            // Erase the closure's lifetime for the helpers: it outlives every claim (see
            // `run_claimed`), as this function waits for all parts before returning.
            let parts: Parts<'static> =
                unsafe { std::mem::transmute::<Parts, Parts<'static>>(run) };
            self.parts
                .store(&parts as *const Parts<'static> as *mut _, Ordering::Relaxed);
            self.done.store(0, Ordering::Relaxed);
            let epoch = (self.word.load(Ordering::Relaxed) >> 32).wrapping_add(1) & 0xffff_ffff;
            self.word
                .store(epoch << 32 | (len as u64) << 16, Ordering::Release);
            let mut mine = 0;
            let mut first_panic = None;
            while let Some(i) = self.claim() {
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| run(i))) {
                    first_panic.get_or_insert(p);
                }
                mine += 1;
            }
            // The helpers' claimed parts: each is running, so this wait is short.
            while self.done.load(Ordering::Acquire) + mine < len {
                std::hint::spin_loop();
            }
            let helper_panic = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(p) = first_panic.or(helper_panic) {
                resume_unwind(p);
            }
        }
    }

    /// Ends the team when the pass ends, panicking or not, so no helper spins on.
    struct Lead(Arc<Team>);
    impl Drop for Lead {
        fn drop(&mut self) {
            self.0.closed.store(true, Ordering::Release);
            LEADS.with(|l| l.borrow_mut().take());
        }
    }

    /// `f` (a forward pass) as the leader of a team of `n` threads, unless this thread already
    /// leads one or runs a part.
    fn lead<R>(n: usize, f: impl FnOnce() -> R) -> R {
        if IN_PART.with(|c| c.get()) || LEADS.with(|l| l.borrow().is_some()) {
            return f();
        }
        let team = Arc::new(Team::new());
        team.recruit(n - 1);
        LEADS.with(|l| *l.borrow_mut() = Some(team.clone()));
        let _lead = Lead(team);
        f()
    }

    /// Runs `f(i, &mut items[i])` for every item on `n` threads; `false` (running nothing)
    /// when no pool could be had. On the leader of a team, over the team; inside a team's
    /// part, in order on this thread; elsewhere as rayon jobs.
    pub(crate) fn for_each_mut<T: Send>(
        n: usize,
        items: &mut [T],
        f: impl Fn(usize, &mut T) + Sync,
    ) -> bool {
        if IN_PART.with(|c| c.get()) {
            items.iter_mut().enumerate().for_each(|(i, t)| f(i, t));
            return true;
        }
        if let Some(team) = LEADS.with(|l| l.borrow().clone()) {
            if items.len() <= MAX_PARTS {
                let base = SendPtr(items.as_mut_ptr());
                let len = items.len();
                // Each index is claimed once, so each `&mut` is unique.
                let run = move |i: usize| {
                    let base = &base;
                    f(i, unsafe { &mut *base.0.add(i) })
                };
                team.fork(n - 1, len, &run);
                return true;
            }
        }
        let run = |items: &mut [T]| items.par_iter_mut().enumerate().for_each(|(i, t)| f(i, t));
        // Natively a pool of `n` of our own; on the web rayon's global pool, whose size
        // `initThreadPool` fixed.
        #[cfg(not(target_arch = "wasm32"))]
        let Some(()) = native::get(n).map(|pool| pool.install(|| run(items))) else {
            return false;
        };
        #[cfg(target_arch = "wasm32")]
        run(items);
        true
    }

    /// A pointer to a fork's items, shared by the threads that claim them.
    struct SendPtr<T>(*mut T);
    // Safety: each item is claimed (and touched) by one thread; `T: Send`.
    unsafe impl<T: Send> Sync for SendPtr<T> {}
    unsafe impl<T: Send> Send for SendPtr<T> {}

    /// Runs `f` on a thread of the pool of `n` (a no-op hop when already on one), leading a
    /// team there for its forks; `Err(f)` when no pool could be had. On the web `rayon::join`
    /// from outside the pool queues it there and waits (`Atomics.wait`, allowed in the engine's
    /// worker).
    pub(crate) fn run_on<R: Send, F: FnOnce() -> R + Send>(n: usize, f: F) -> Result<R, F> {
        #[cfg(not(target_arch = "wasm32"))]
        return match native::get(n) {
            Some(pool) => Ok(pool.install(|| lead(n, f))),
            None => Err(f),
        };
        #[cfg(target_arch = "wasm32")]
        Ok(rayon::join(|| lead(n, f), || ()).0)
    }

    /// The default thread count: one per core natively; on the web 1, since rayon's global
    /// pool exists only once JS has started it (asking rayon first would build a pool of one
    /// and make `initThreadPool` fail): the worker sets the count it started.
    pub(crate) fn default_threads() -> usize {
        #[cfg(not(target_arch = "wasm32"))]
        return std::thread::available_parallelism().map_or(1, |n| n.get());
        #[cfg(target_arch = "wasm32")]
        return 1;
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod native {
        use std::sync::{Arc, Mutex};

        static POOL: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

        /// The pool of `n` threads, built on first use and rebuilt when `n` changes.
        pub(super) fn get(n: usize) -> Option<Arc<rayon::ThreadPool>> {
            let mut g = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((m, p)) = g.as_ref() {
                if *m == n {
                    return Some(p.clone());
                }
            }
            let p = Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("chord-matmul-{i}"))
                    .build()
                    .ok()?,
            );
            *g = Some((n, p.clone()));
            Some(p)
        }
    }
}

/// No thread pool in this build: everything runs on the calling thread.
#[cfg(not(any(
    all(feature = "threads", not(target_arch = "wasm32")),
    all(feature = "web-threads", target_arch = "wasm32")
)))]
mod single {
    pub(crate) const ENABLED: bool = false;

    pub(crate) fn for_each_mut<T>(_: usize, _: &mut [T], _: impl Fn(usize, &mut T) + Sync) -> bool {
        false
    }

    pub(crate) fn run_on<R, F: FnOnce() -> R>(_: usize, f: F) -> Result<R, F> {
        Err(f)
    }

    pub(crate) fn default_threads() -> usize {
        1
    }
}

#[cfg(all(test, feature = "threads", not(target_arch = "wasm32")))]
mod tests {
    use super::{for_each_mut, run_on};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// Runs `f` on a thread of its own and fails if it does not end within a minute (a team
    /// that deadlocks would otherwise hang the test run).
    fn within_a_minute(name: &str, f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => h.join().unwrap(),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Err(p) = h.join() {
                    std::panic::resume_unwind(p);
                }
            }
            Err(e) => panic!("{name}: no result within a minute ({e}): the team deadlocked"),
        }
    }

    /// A pass's forks run every part exactly once, for part counts around the split sizes.
    #[test]
    fn every_part_runs_once() {
        within_a_minute("every_part_runs_once", || {
            run_on(3, || {
                for len in 0..300 {
                    let mut v = vec![0u32; len % 97];
                    assert!(for_each_mut(3, &mut v, |i, x| *x += i as u32 + 1));
                    for (i, x) in v.iter().enumerate() {
                        assert_eq!(*x, i as u32 + 1, "fork {len}: part {i}");
                    }
                }
            })
            .unwrap_or_else(|_| panic!("no pool of 3 threads"));
        });
    }

    /// A fork's parts reach a second thread: part 0 waits (up to 20 s) until part 1 has started
    /// elsewhere, which only another thread of the team can do while one is in part 0.
    #[test]
    fn helpers_take_parts() {
        within_a_minute("helpers_take_parts", || {
            run_on(2, || {
                for round in 0..20 {
                    let started = AtomicBool::new(false);
                    let leader = std::thread::current().id();
                    let mut who = [None, None];
                    for_each_mut(2, &mut who, |i, w| {
                        *w = Some(std::thread::current().id());
                        if i == 1 {
                            started.store(true, Ordering::Release);
                        } else {
                            let t0 = Instant::now();
                            while !started.load(Ordering::Acquire) {
                                assert!(
                                    t0.elapsed() < Duration::from_secs(20),
                                    "round {round}: no second thread took part 1 within 20 s"
                                );
                                std::hint::spin_loop();
                            }
                        }
                    });
                    // Either may take part 0 (a spinning helper can claim it first); the
                    // leader and one helper ran the two.
                    assert!(who.iter().all(Option::is_some), "round {round}: {who:?}");
                    assert_ne!(who[0], who[1], "round {round}: one thread ran both parts");
                    assert!(who.contains(&Some(leader)), "round {round}: {who:?}");
                    // Long gaps between forks: the helpers leave and are sent again.
                    if round % 5 == 4 {
                        std::thread::sleep(Duration::from_millis(30));
                    }
                }
            })
            .unwrap_or_else(|_| panic!("no pool of 2 threads"));
        });
    }

    /// A fork inside a part (attention's heads inside a batched step's sequences) runs in order
    /// on the thread that reached it.
    #[test]
    fn nested_forks_run_in_place() {
        within_a_minute("nested_forks_run_in_place", || {
            run_on(2, || {
                let mut outer = vec![Vec::new(); 4];
                for_each_mut(2, &mut outer, |i, seen| {
                    let me = std::thread::current().id();
                    let mut inner = vec![None; 5];
                    for_each_mut(2, &mut inner, |j, x| {
                        *x = Some((j, std::thread::current().id()))
                    });
                    for (j, x) in inner.into_iter().enumerate() {
                        assert_eq!(x, Some((j, me)), "outer part {i}, inner part {j}");
                        seen.push(j);
                    }
                });
                assert!(outer.iter().all(|s| *s == [0, 1, 2, 3, 4]));
                // A nested pass (another `run_on` inside one) joins the running team.
                let r = run_on(2, || {
                    let mut v = [0u8; 8];
                    for_each_mut(2, &mut v, |i, x| *x = i as u8);
                    v
                });
                assert_eq!(r.ok(), Some([0, 1, 2, 3, 4, 5, 6, 7]));
            })
            .unwrap_or_else(|_| panic!("no pool of 2 threads"));
        });
    }

    /// A panicking part reaches the pass's caller once every other part is done, and ends the
    /// team: the next pass runs normally.
    #[test]
    fn a_panicking_part_reaches_the_caller() {
        within_a_minute("a_panicking_part_reaches_the_caller", || {
            for which in [0, 5] {
                let r = std::panic::catch_unwind(|| {
                    run_on(2, || {
                        let mut v = [0u32; 6];
                        for_each_mut(2, &mut v, |i, x| {
                            if i == which {
                                panic!("part {i} fails");
                            }
                            *x = 1;
                        });
                    })
                });
                let Err(p) = r else {
                    panic!("part {which}: the panic did not reach the caller");
                };
                let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
                assert_eq!(msg, format!("part {which} fails"));
            }
            let sum = run_on(2, || {
                let mut v = [1u32; 64];
                for_each_mut(2, &mut v, |i, x| *x += i as u32);
                v.iter().sum::<u32>()
            });
            assert_eq!(sum.ok(), Some(64 + 63 * 64 / 2));
        });
    }

    /// Passes from several threads at once over one pool of 2 (a server's engines): each
    /// leads its own team, and none waits on another's.
    #[test]
    fn concurrent_passes_share_the_pool() {
        within_a_minute("concurrent_passes_share_the_pool", || {
            let callers: Vec<_> = (0..4u64)
                .map(|c| {
                    std::thread::spawn(move || {
                        for round in 0..50u64 {
                            let got = run_on(2, || {
                                let mut v = vec![0u64; 33];
                                for_each_mut(2, &mut v, |i, x| *x = c * 1000 + round + i as u64);
                                v
                            });
                            let v = got.unwrap_or_else(|_| panic!("no pool"));
                            assert!(v
                                .iter()
                                .enumerate()
                                .all(|(i, &x)| x == c * 1000 + round + i as u64));
                        }
                    })
                })
                .collect();
            for c in callers {
                c.join().unwrap();
            }
        });
    }
}
