//! The continuous-batching harness shared by tests/batch.rs (CPU) and tests/gpu_batch.rs (GPU):
//! submit and wait, wait for the scheduler to go idle, and the run where four requests start
//! together and a fifth joins while they decode.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasm_chord::batch::{Batcher, Event, OnEvent, Prompt};
use wasm_chord::engine::{Control, GenerateOptions, Generation};

/// Submit one request and wait (up to `timeout`) for its result.
pub fn run_one(
    b: &Batcher,
    prompt: Prompt,
    opts: GenerateOptions,
    timeout: Duration,
) -> Generation {
    let (tx, rx) = mpsc::channel();
    b.submit(
        prompt,
        opts,
        Box::new(move |ev| {
            if let Event::Done(g) = ev {
                let _ = tx.send(Ok(g));
            } else if let Event::Failed(e) = ev {
                let _ = tx.send(Err(e));
            }
            Control::Continue
        }),
    )
    .unwrap();
    rx.recv_timeout(timeout).unwrap().expect("generation")
}

/// No sequence is active: the scheduler counts a sequence out before it delivers its last
/// event, so a caller woken by that event already sees it gone.
pub fn assert_idle(active: &AtomicUsize) {
    assert_eq!(
        active.load(Ordering::SeqCst),
        0,
        "sequences still counted active after their last event"
    );
}

/// Runs five requests on `b`: the first four submitted together, the fifth from inside the
/// first one's callback at its third token, so it arrives while the others run and must join
/// a later decode step. Returns the five generations in request order.
pub fn run_with_late_joiner(
    b: &Batcher,
    reqs: Vec<(Prompt, GenerateOptions)>,
    timeout: Duration,
) -> Vec<Generation> {
    assert_eq!(reqs.len(), 5, "four at once and one late");
    let results: Arc<Mutex<Vec<Option<Generation>>>> = Arc::new(Mutex::new(vec![None; 5]));
    let (done_tx, done_rx) = mpsc::channel::<usize>();
    let late = Arc::new(Mutex::new(Some(reqs[4].clone())));
    let mk = |i: usize| {
        let results = Arc::clone(&results);
        let done_tx = done_tx.clone();
        let late = Arc::clone(&late);
        let handle = b.clone();
        let mut tokens = 0;
        Box::new(move |ev: Event| {
            match ev {
                Event::Token { .. } => {
                    tokens += 1;
                    if i == 0 && tokens == 3 {
                        if let Some((p, o)) = late.lock().unwrap().take() {
                            let results = Arc::clone(&results);
                            let done_tx = done_tx.clone();
                            handle
                                .submit(
                                    p,
                                    o,
                                    Box::new(move |ev| {
                                        match ev {
                                            Event::Done(g) => {
                                                results.lock().unwrap()[4] = Some(g);
                                                let _ = done_tx.send(4);
                                            }
                                            Event::Failed(e) => panic!("request 4 failed: {e}"),
                                            _ => {}
                                        }
                                        Control::Continue
                                    }),
                                )
                                .unwrap();
                        }
                    }
                }
                Event::Done(g) => {
                    results.lock().unwrap()[i] = Some(g);
                    let _ = done_tx.send(i);
                }
                Event::Failed(e) => panic!("request {i} failed: {e}"),
                Event::Started { .. } => {}
            }
            Control::Continue
        }) as OnEvent
    };
    for (i, (p, o)) in reqs.into_iter().take(4).enumerate() {
        b.submit(p, o, mk(i)).unwrap();
    }
    for _ in 0..5 {
        done_rx
            .recv_timeout(timeout)
            .expect("all five requests finish");
    }
    let mut results = results.lock().unwrap();
    results.iter_mut().map(|g| g.take().unwrap()).collect()
}

/// Each batched generation equals its solo run (tokens, text, finish reason, prompt); four
/// sequences shared a step; batching took fewer steps than one at a time, with every row some
/// sequence's step; and the scheduler is idle with nothing queued.
pub fn assert_batched_equal_solo(b: &Batcher, batched: &[Generation], solo: &[Generation]) {
    assert_eq!(batched.len(), solo.len());
    for (i, (g, s)) in batched.iter().zip(solo).enumerate() {
        assert_eq!(g.ids, s.ids, "request {i}: batched tokens differ from solo");
        assert_eq!(g.text, s.text, "request {i}");
        assert_eq!(g.finish, s.finish, "request {i}");
        assert_eq!(g.prompt_ids, s.prompt_ids, "request {i}");
    }
    let st = &b.stats;
    assert_eq!(
        st.max_batch.load(Ordering::SeqCst),
        4,
        "four sequences shared a step"
    );
    let (steps, rows) = (
        st.steps.load(Ordering::SeqCst),
        st.step_rows.load(Ordering::SeqCst),
    );
    let solo_steps: usize = solo.iter().map(|g| g.ids.len().saturating_sub(1)).sum();
    assert!(
        steps < solo_steps,
        "batching takes fewer steps ({steps}) than one sequence at a time ({solo_steps})"
    );
    assert_eq!(
        rows, solo_steps,
        "every decode row belongs to some sequence's step"
    );
    // Finished sequences freed their slots.
    assert_idle(&st.active);
    assert_eq!(st.queued.load(Ordering::SeqCst), 0);
}
