//! One closed list of error codes: `wasm_chord::error::Code` (Rust) and `CODE` in
//! worker/protocol.js must hold the same codes, and the JS side must use no other.

use std::collections::BTreeSet;
use wasm_chord::error::Code;

fn read(rel: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `NAME: 'code'` pairs of `export const CODE = Object.freeze({ ... })`.
fn js_codes() -> BTreeSet<String> {
    let src = read("worker/protocol.js");
    let start = src
        .find("export const CODE = Object.freeze({")
        .expect("protocol.js defines CODE");
    let body = &src[start..];
    let body = &body[..body.find("});").expect("CODE ends with `});`")];
    body.lines()
        .skip(1)
        .filter_map(|l| {
            let l = l.trim();
            let (_, rest) = l.split_once(": '")?;
            Some(rest.split('\'').next()?.to_owned())
        })
        .collect()
}

#[test]
fn rust_and_protocol_js_list_the_same_codes() {
    let rust: BTreeSet<String> = Code::ALL.iter().map(|c| c.as_str().to_owned()).collect();
    assert_eq!(rust.len(), Code::ALL.len(), "a code string is listed twice");
    let js = js_codes();
    assert!(
        js.len() > 20,
        "parsed too few codes from protocol.js: {js:?}"
    );
    let only_rust: Vec<_> = rust.difference(&js).collect();
    let only_js: Vec<_> = js.difference(&rust).collect();
    assert!(
        only_rust.is_empty() && only_js.is_empty(),
        "only in src/error.rs: {only_rust:?}; only in worker/protocol.js: {only_js:?}"
    );
}

#[test]
fn the_worker_and_page_use_only_listed_codes() {
    let js = js_codes();
    for file in [
        "worker/worker.js",
        "worker/store.js",
        "worker/client.js",
        "www/app.js",
    ] {
        let src = read(file);
        // String literals handed to makeError or written as `code: '...'`.
        for pat in ["makeError('", "code: '"] {
            for (i, _) in src.match_indices(pat) {
                let rest = &src[i + pat.len()..];
                let code = &rest[..rest.find('\'').unwrap()];
                assert!(
                    js.contains(code),
                    "{file}: code `{code}` is not in the closed list (src/error.rs Code)"
                );
            }
        }
    }
}
