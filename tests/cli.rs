//! `chord` end to end: `inspect --json` against the `gguf` package's view of every test model
//! (goldens in tests/goldens/inspect, made by scripts/gen-inspect-goldens.py), `dequant` against
//! the package's dequantized values (tests/fixtures/quant/real.json), and clean failures.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use serde_json::Value as Json;
use std::process::{Command, Output};

fn chord(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chord"))
        .args(args)
        .output()
        .expect("run chord")
}

fn stdout_json(o: &Output) -> Json {
    assert!(
        o.status.success(),
        "chord failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("chord printed JSON")
}

#[test]
fn inspect_json_matches_gguf_package_on_all_test_models() {
    for model in common::TEST_MODELS {
        let path = common::model_path(model);
        let golden: Json = serde_json::from_str(
            &std::fs::read_to_string(
                common::root()
                    .join("tests/goldens/inspect")
                    .join(model.replace(".gguf", ".json")),
            )
            .expect("golden"),
        )
        .unwrap();
        let got = stdout_json(&chord(&["inspect", path.to_str().unwrap(), "--json"]));
        for key in ["version", "alignment", "architecture", "tensor_count"] {
            assert_eq!(got[key], golden[key], "{model}: {key}");
        }
        assert_eq!(got["tensors"], golden["tensors"], "{model}: tensor table");
        let keys: Vec<&str> = got["metadata"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut want: Vec<&str> = golden["metadata_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort();
        want.sort();
        assert_eq!(keys_sorted, want, "{model}: metadata keys");
        // Summaries every model has.
        assert!(got["hyperparameters"]["embedding_length"].as_u64().unwrap() > 0);
        assert!(got["hyperparameters"]["block_count"].as_u64().unwrap() > 0);
        assert!(got["tokenizer"]["vocab_size"].as_u64().unwrap() >= 512);
        assert!(got["tokenizer"]["model"].is_string());
    }
}

#[test]
fn inspect_summarises_tokenizer_and_hyperparameters() {
    let path = common::model_path("smollm2-135m-instruct-q4_k_m.gguf");
    let j = stdout_json(&chord(&["inspect", path.to_str().unwrap(), "--json"]));
    let h = &j["hyperparameters"];
    assert_eq!(h["embedding_length"], 576);
    assert_eq!(h["block_count"], 30);
    assert_eq!(h["attention.head_count"], 9);
    assert_eq!(h["attention.head_count_kv"], 3);
    let t = &j["tokenizer"];
    assert_eq!(t["model"], "gpt2");
    assert_eq!(t["pre"], "smollm");
    assert_eq!(t["vocab_size"], 49152);
    assert_eq!(t["has_chat_template"], true);
    assert_eq!(t["special"]["bos"]["text"], "<|im_start|>");
    assert_eq!(t["special"]["eos"]["text"], "<|im_end|>");

    let g = stdout_json(&chord(&[
        "inspect",
        common::model_path("gemma-3-270m-q4_k_m.gguf")
            .to_str()
            .unwrap(),
        "--json",
    ]));
    assert_eq!(g["architecture"], "gemma3");
    assert_eq!(g["tokenizer"]["model"], "llama");
    assert_eq!(g["tokenizer"]["has_chat_template"], false);
    assert_eq!(g["hyperparameters"]["attention.sliding_window"], 512);

    // Per-layer hyper-parameters are arrays (Gemma 4's KV heads per layer), shown as they are.
    let zoo = common::root().join("tests/fixtures/zoo/tiny-gemma4.gguf");
    let g4 = stdout_json(&chord(&["inspect", zoo.to_str().unwrap(), "--json"]));
    assert_eq!(g4["architecture"], "gemma4");
    assert_eq!(
        g4["hyperparameters"]["attention.head_count_kv"],
        serde_json::json!([2, 2, 1, 2, 1])
    );
    let o = chord(&["inspect", zoo.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("attention.head_count_kv") && text.contains("[2,2,1,2,1]"),
        "{text}"
    );

    // The human table lists every tensor.
    let o = chord(&["inspect", path.to_str().unwrap()]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("architecture  llama"), "{text}");
    assert!(text.contains("blk.29.ffn_down.weight"));
    assert_eq!(text.matches(".weight").count(), 272);
}

/// Bad input ends in a one-line error on stderr and a non-zero exit, never a panic.
#[test]
fn bad_files_and_arguments_fail_cleanly() {
    let dir = std::env::temp_dir().join(format!("chord-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_gguf = dir.join("not.gguf");
    std::fs::write(&not_gguf, b"<html>404 Not Found</html>").unwrap();
    let model = common::model_path("tiny-random-llama-q4_k_m.gguf");
    let truncated = dir.join("truncated.gguf");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let header_cut = dir.join("header-cut.gguf");
    std::fs::write(&header_cut, &bytes[..3000]).unwrap();
    let cases: [(&[&str], i32, &str); 8] = [
        (
            &["inspect", not_gguf.to_str().unwrap()],
            1,
            "not a GGUF file",
        ),
        (
            &["inspect", truncated.to_str().unwrap()],
            1,
            "beyond the end",
        ),
        (&["inspect", header_cut.to_str().unwrap()], 1, "truncated"),
        (
            &["inspect", "/nonexistent/model.gguf"],
            1,
            "opening /nonexistent/model.gguf",
        ),
        (
            &["dequant", model.to_str().unwrap(), "no.such.tensor"],
            1,
            "no tensor named `no.such.tensor`",
        ),
        (&["inspect"], 2, "expected MODEL"),
        (&["frobnicate"], 2, "unknown command"),
        (
            &["inspect", model.to_str().unwrap(), "--bogus"],
            2,
            "unknown option --bogus",
        ),
    ];
    for (args, code, needle) in cases {
        let o = chord(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// `chord dequant` gives the `gguf` package's values, bit for bit, on one tensor of every type
/// in every test model (tests/fixtures/quant/real.json, made by scripts/gen-quant-fixtures.py).
#[test]
fn dequant_matches_gguf_package_on_every_type_in_the_models() {
    let root = common::root().join("tests/fixtures/quant");
    let j: Json =
        serde_json::from_str(&std::fs::read_to_string(root.join("real.json")).unwrap()).unwrap();
    let entries = j["tensors"].as_array().expect("real.json tensors");
    let out = std::env::temp_dir().join(format!("chord-dequant-{}.f32", std::process::id()));
    let mut types = std::collections::BTreeSet::new();
    for e in entries {
        let model = common::model_path(e["model"].as_str().unwrap());
        let tensor = e["tensor"].as_str().unwrap();
        let o = chord(&[
            "dequant",
            model.to_str().unwrap(),
            tensor,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "{tensor}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(
            bytes.len() as u64,
            4 * e["elements"].as_u64().unwrap(),
            "{tensor}"
        );
        assert_eq!(
            format!("{:016x}", fnv1a64(&bytes)),
            e["fnv1a64"].as_str().unwrap(),
            "{}: {tensor} ({}) differs from the gguf package",
            e["model"],
            e["type"]
        );
        types.insert(e["type"].as_str().unwrap().to_owned());
    }
    std::fs::remove_file(&out).ok();
    for t in ["F32", "Q4_K", "Q6_K", "Q5_0", "Q8_0", "Q4_1"] {
        assert!(types.contains(t), "no real tensor of type {t} checked");
    }
}

/// `chord generate --backend gpu` gives the CPU's greedy tokens (GPU tests run on lavapipe:
/// WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json).
#[test]
fn generate_on_gpu_equals_cpu_greedy() {
    let model = common::model_path("tiny-random-llama-q4_k_m.gguf");
    let run = |backend: &str| {
        stdout_json(&chord(&[
            "generate",
            model.to_str().unwrap(),
            "--prompt",
            "The capital of France is",
            "-n",
            "12",
            "--backend",
            backend,
            "--json",
        ]))
    };
    let (cpu, gpu) = (run("cpu"), run("gpu"));
    assert_eq!(cpu["prompt_ids"], gpu["prompt_ids"]);
    assert_eq!(cpu["ids"], gpu["ids"]);
    assert_eq!(cpu["text"], gpu["text"]);
    assert_eq!(cpu["ids"].as_array().unwrap().len(), 12);
}

/// The flags main's CLI gained before the move to clap: constrained `generate`
/// (`--json-schema`, `--grammar`, not both), `bench --turns`, and `inspect`'s engine line.
#[test]
fn constrained_generate_turns_bench_and_engine_line() {
    let dir = std::env::temp_dir().join(format!("chord-cli-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = dir.join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"colour":{"enum":["red","green"]}},"required":["colour"],"additionalProperties":false}"#,
    )
    .unwrap();
    let lark = dir.join("g.lark");
    std::fs::write(&lark, "start: \"yes\" | \"no\"\n").unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let smol = common::model_path("smollm2-135m-instruct-q4_k_m.gguf");
    let smol = smol.to_str().unwrap();
    let (s, l) = (schema.to_str().unwrap(), lark.to_str().unwrap());

    let o = chord(&[
        "generate",
        smol,
        "--chat",
        "Pick a colour.",
        "-n",
        "20",
        "--json-schema",
        s,
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout_json(&o)["text"].as_str().unwrap().to_owned();
    let v: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert!(
        ["red", "green"].contains(&v["colour"].as_str().unwrap()),
        "{v}"
    );

    let o = chord(&[
        "generate",
        smol,
        "--prompt",
        "Is it?",
        "-n",
        "5",
        "--grammar",
        l,
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout_json(&o)["text"].as_str().unwrap().to_owned();
    assert!(text == "yes" || text == "no", "{text:?}");

    let o = chord(&[
        "generate",
        smol,
        "--prompt",
        "x",
        "--json-schema",
        s,
        "--grammar",
        l,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("give one of --json-schema or --grammar"));
    let o = chord(&[
        "generate",
        smol,
        "--prompt",
        "x",
        "--json-schema",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not JSON"));

    let o = chord(&[
        "bench",
        smol,
        "--turns",
        "2",
        "--turn-tokens",
        "20",
        "-n",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = stdout_json(&o);
    assert!(j.is_object() && !j.as_object().unwrap().is_empty(), "{j}");
    assert!(
        j.to_string().contains("ttft"),
        "time to first token per turn: {j}"
    );

    let o = chord(&["inspect", smol]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("engine        runs on the CPU and GPU backends"),
        "{out}"
    );
    assert_eq!(
        stdout_json(&chord(&["inspect", smol, "--json"]))["engine"]["cpu"],
        true
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `bench --depth`: decode after a prefilled context, with the decode's time split between the
/// attention and the recurrent mixers (tiny LFM2: 2 attention and 3 short-convolution layers).
#[test]
fn bench_decodes_at_a_depth_and_splits_the_mixers() {
    let lfm2 =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zoo/tiny-lfm2.gguf");
    assert!(
        lfm2.is_file(),
        "{} is missing: run scripts/tiny-models",
        lfm2.display()
    );
    let o = chord(&[
        "bench",
        lfm2.to_str().unwrap(),
        "-p",
        "4",
        "-n",
        "3",
        "--depth",
        "20",
        "--reps",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = stdout_json(&o);
    assert_eq!(j["tg"]["depth"], 20, "{j}");
    assert_eq!(j["tg_mixers"]["attention"]["layers"], 2.0, "{j}");
    assert_eq!(j["tg_mixers"]["recurrent"]["layers"], 3.0, "{j}");
    for kind in ["attention", "recurrent"] {
        let ms = j["tg_mixers"][kind]["ms_per_token"]["median"].as_f64();
        assert!(ms.is_some_and(|m| m > 0.0), "{kind}: {j}");
    }
}
