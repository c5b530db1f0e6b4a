//! `chord serve` over raw TCP: the HTTP hardening (head size limit, bodies that never leak into
//! the next request, test hooks only on request, slow clients timed out, no blanket CORS), the
//! app's files (Range, ETag, MIME, COOP/COEP), and the OpenAI API's shapes, errors, auth and
//! abort on disconnect. Everything on 127.0.0.1; the real-client tests are in tests/e2e.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::tools::{validate, weather_tools};

use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TINY: &str = "tiny-random-llama-q4_k_m.gguf";

/// Start `chord serve` on a free port with `args`; waits for its address line.
fn serve(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chord"))
        .args(["serve", "--port", "0", "--root"])
        .arg(common::root())
        .arg("--models")
        .arg(common::root().join("models"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start chord serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Server { child, port }
}

fn api_server(extra: &[&str]) -> Server {
    api_server_with(TINY, "256", extra)
}

/// `--model tiny=MODEL --ctx CTX` and `extra`.
fn api_server_with(model: &str, ctx: &str, extra: &[&str]) -> Server {
    let model = common::model_path(model);
    let spec = format!("tiny={}", model.display());
    let mut args = vec!["--model", &spec, "--ctx", ctx];
    args.extend_from_slice(extra);
    serve(&args)
}

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c
}

/// One parsed response: status, lower-cased headers, body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read one response (Content-Length or chunked body) from a keep-alive connection.
fn read_resp(r: &mut BufReader<TcpStream>, head_only: bool) -> Resp {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = vec![];
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: vec![],
    };
    if head_only || status == 304 || status == 204 {
        return resp;
    }
    if let Some(len) = resp.header("content-length") {
        let mut body = vec![0; len.parse().unwrap()];
        r.read_exact(&mut body).unwrap();
        resp.body = body;
    } else if resp.header("transfer-encoding") == Some("chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            resp.body.extend_from_slice(&chunk[..n]);
        }
    }
    resp
}

fn request(s: &Server, raw: &str) -> Resp {
    let mut c = connect(s);
    c.write_all(raw.as_bytes()).unwrap();
    let head = raw.starts_with("HEAD ");
    read_resp(&mut BufReader::new(c), head)
}

fn get(s: &Server, path: &str, extra: &str) -> Resp {
    request(
        s,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"),
    )
}

fn post(s: &Server, path: &str, extra: &str, body: &str) -> Resp {
    request(
        s,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn oversized_header_is_rejected() {
    let s = serve(&[]);
    let big = "a".repeat(20 * 1024);
    let r = request(
        &s,
        &format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"),
    );
    assert_eq!(r.status, 431, "a 20 KiB header is refused");
    let big_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "b".repeat(20 * 1024));
    let mut c = connect(&s);
    c.write_all(big_line.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(
        out.is_empty() || out.starts_with("HTTP/1.1 414") || out.starts_with("HTTP/1.1 431"),
        "a 20 KiB request line is refused: {out:?}"
    );
    // A normal request still works.
    assert_eq!(get(&s, "/", "").status, 200);
}

#[test]
fn post_body_does_not_leak_into_the_next_request() {
    let s = api_server(&["--test-controls"]);
    // The body looks like a request that would switch the model route off.
    let sneaky = "GET /__control?models=off HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut c = connect(&s);
    for path in ["/v1/chat/completions", "/index.html"] {
        let raw = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{sneaky}GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
            sneaky.len()
        );
        c.write_all(raw.as_bytes()).unwrap();
    }
    let mut r = BufReader::new(c.try_clone().unwrap());
    let first = read_resp(&mut r, false);
    assert_eq!(first.status, 400, "the body is not JSON: {}", first.text());
    assert_eq!(first.json()["error"]["type"], "invalid_request_error");
    let second = read_resp(&mut r, false);
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.json()["status"], "ok");
    let third = read_resp(&mut r, false);
    assert_eq!(third.status, 405, "POST to a file: {}", third.text());
    let fourth = read_resp(&mut r, false);
    assert_eq!(fourth.status, 200);
    // The control hidden in the bodies never ran.
    let state = get(&s, "/__control", "").json();
    assert_eq!(state["models"], true, "{state}");
}

#[test]
fn control_endpoints_are_off_without_the_flag() {
    let s = serve(&[]);
    let r = get(&s, "/__control?models=off", "");
    assert_eq!(r.status, 404);
    assert_eq!(get(&s, "/models/", "").status, 200, "the route stayed on");
    let s = serve(&["--test-controls"]);
    let r = get(&s, "/__control?models=off", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["models"], false);
    assert_eq!(get(&s, "/models/", "").status, 503);
}

#[test]
fn slow_clients_time_out() {
    let s = api_server(&["--read-timeout", "1", "--write-timeout", "1"]);
    // A head that never ends.
    let mut c = connect(&s);
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    let mut out = vec![];
    let _ = c.read_to_end(&mut out);
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "the connection was closed after {waited:?}"
    );
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.is_empty() || out.starts_with("HTTP/1.1 408"),
        "no response but a timeout: {out:?}"
    );
    // A body that never ends.
    let mut c = connect(&s);
    c.write_all(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":",
    )
    .unwrap();
    let t = Instant::now();
    let r = read_resp(&mut BufReader::new(c), false);
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    // A client that does not read: the model body stalls and the server gives up.
    let size = std::fs::metadata(common::model_path(TINY)).unwrap().len();
    let big = "smollm2-135m-instruct-q4_k_m.gguf";
    let big_size = std::fs::metadata(common::model_path(big)).unwrap().len();
    assert!(size > 0);
    let mut c = connect(&s);
    c.write_all(format!("GET /models/{big} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let mut got = 0u64;
    let mut buf = vec![0; 1 << 20];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
    }
    assert!(
        got < big_size,
        "the stalled response was cut ({got} of {big_size} bytes)"
    );
}

#[test]
fn files_have_range_etag_mime_and_isolation_headers_but_no_blanket_cors() {
    let s = serve(&[]);
    let r = get(&s, "/", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cross-origin-opener-policy"), Some("same-origin"));
    assert_eq!(
        r.header("cross-origin-embedder-policy"),
        Some("require-corp")
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    let etag = r.header("etag").unwrap().to_owned();
    let r = get(&s, "/", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 304);
    let r = get(&s, "/worker/client.js", "");
    assert_eq!(
        r.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let path = format!("/models/{TINY}");
    let r = get(&s, &path, "Range: bytes=0-3\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"GGUF");
    let size = std::fs::metadata(common::model_path(TINY)).unwrap().len();
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-3/{size}").as_str())
    );
    let r = get(&s, &path, &format!("Range: bytes={size}-\r\n"));
    assert_eq!(r.status, 416);
    let r = request(
        &s,
        &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(size.to_string().as_str()));
    assert_eq!(get(&s, "/../Cargo.toml", "").status, 404);
    assert_eq!(get(&s, "/www/.hidden", "").status, 403);
    let listing = get(&s, "/models/", "").json();
    assert!(listing
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == TINY));

    let s = serve(&["--no-coop-coep", "--no-range"]);
    let r = get(&s, &path, "Range: bytes=0-3\r\n");
    assert_eq!(r.status, 200, "--no-range: the whole file");
    assert_eq!(r.header("cross-origin-opener-policy"), None);
}

#[test]
fn cors_only_for_the_given_origins_and_api_key() {
    let s = api_server(&["--cors-origin", "http://a.example", "--api-key", "sekret"]);
    let pre = |origin: &str| {
        request(
            &s,
            &format!("OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n"),
        )
    };
    let ok = pre("http://a.example");
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://a.example")
    );
    let no = pre("http://b.example");
    assert_eq!(no.header("access-control-allow-origin"), None);
    let r = get(&s, "/v1/models", "Origin: http://a.example\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    let r = get(&s, "/v1/models", "Authorization: Bearer wrong\r\n");
    assert_eq!(r.status, 401);
    let r = get(&s, "/v1/models", "Authorization: Bearer sekret\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"][0]["id"], "tiny");
    // /health needs no key.
    assert_eq!(get(&s, "/health", "").status, 200);
}

#[test]
fn openai_api_shapes_and_errors() {
    // A model with a chat template.
    let s = api_server_with("smollm2-135m-instruct-q4_k_m.gguf", "256", &[]);
    let models = get(&s, "/v1/models", "").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["object"], "model");
    let body = r#"{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":5}"#;
    let r = post(&s, "/v1/chat/completions", "", body);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["object"], "chat.completion");
    assert_eq!(j["choices"][0]["message"]["role"], "assistant");
    let fin = j["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(fin == "length" || fin == "stop", "{fin}");
    let u = &j["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    if fin == "length" {
        assert_eq!(u["completion_tokens"], 5);
    }
    // The next turn of that chat reuses the slot's cache: only the new turn is prefilled.
    let reply = j["choices"][0]["message"]["content"].as_str().unwrap();
    let turn2 = json!({
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "And then?"}
        ],
        "max_tokens": 3
    });
    let r = post(&s, "/v1/chat/completions", "", &turn2.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let u2 = &r.json()["usage"];
    let cached = u2["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached >= u["prompt_tokens"].as_u64().unwrap()
            && cached < u2["prompt_tokens"].as_u64().unwrap(),
        "turn 2 reuses turn 1's prompt: {u2}"
    );

    // Structured output: a JSON schema the reply must follow.
    let schema = json!({
        "messages": [{"role": "user", "content": "Pick a colour as JSON."}],
        "max_tokens": 40,
        "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": {
            "type": "object",
            "properties": {"colour": {"enum": ["red", "green", "blue"]}},
            "required": ["colour"],
            "additionalProperties": false
        }}}
    });
    let r = post(&s, "/v1/chat/completions", "", &schema.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let content = j["choices"][0]["message"]["content"].as_str().unwrap();
    let v: Json = serde_json::from_str(content).unwrap_or_else(|e| panic!("{content:?}: {e}"));
    assert!(
        ["red", "green", "blue"].contains(&v["colour"].as_str().unwrap_or("")),
        "{v}"
    );
    assert_eq!(j["choices"][0]["finish_reason"], "stop");

    let r = post(
        &s,
        "/v1/completions",
        "",
        r#"{"model":"tiny","prompt":"Once","max_tokens":4,"stream":true}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let last: Json = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert_eq!(last["object"], "text_completion");
    assert!(last["choices"][0]["finish_reason"].is_string());
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() >= 1);

    let err = |body: &str, status: u16, param: Option<&str>| {
        let r = post(&s, "/v1/chat/completions", "", body);
        assert_eq!(r.status, status, "{body}: {}", r.text());
        let e = r.json();
        assert!(e["error"]["message"].as_str().unwrap().len() > 5, "{e}");
        if let Some(p) = param {
            assert_eq!(e["error"]["param"], p, "{e}");
        }
    };
    err("{not json", 400, None);
    err(r#"{"messages":[]}"#, 400, Some("messages"));
    err(r#"{"messages":"hi"}"#, 400, Some("messages"));
    err(
        r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
        400,
        Some("temperature"),
    );
    err(
        r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
        400,
        Some("max_tokens"),
    );
    err(
        r#"{"messages":[{"role":"user","content":"x"}],"n":3}"#,
        400,
        Some("n"),
    );
    err(
        r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}"#,
        400,
        Some("response_format"),
    );
    // SmolLM2's template renders no tools: refused, not silently left out of the prompt.
    err(
        r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#,
        400,
        Some("tools"),
    );
    // A grammar that cannot constrain decoding: 400 with the engine's code.
    let r = post(
        &s,
        "/v1/chat/completions",
        "",
        r#"{"messages":[{"role":"user","content":"x"}],"grammar":"start: ???"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "bad_grammar");
    let long = "word ".repeat(400);
    let r = post(
        &s,
        "/v1/completions",
        "",
        &format!(r#"{{"prompt":"{long}","max_tokens":4}}"#),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    let r = get(&s, "/v1/chat/completions", "");
    assert_eq!(r.status, 405);
    let r = get(&s, "/v1/nothing", "");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_object());

    // Two models: an unknown id is a 404.
    let m = common::model_path(TINY);
    let (a, b) = (format!("a={}", m.display()), format!("b={}", m.display()));
    let s2 = serve(&["--model", &a, "--model", &b, "--ctx", "128"]);
    let r = post(
        &s2,
        "/v1/chat/completions",
        "",
        r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    let ids: Vec<String> = get(&s2, "/v1/models", "").json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["a", "b"]);
}

const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// Checks one call of OpenAI's shape against the tools: a known function, a `call_` id and
/// arguments (a JSON text) that validate against its parameters. Returns the function's name.
fn check_call(call: &Json) -> String {
    let tools = weather_tools();
    assert_eq!(call["type"], "function", "{call}");
    assert!(
        call["id"].as_str().is_some_and(|i| i.starts_with("call_")),
        "{call}"
    );
    let name = call["function"]["name"].as_str().unwrap();
    let schema = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == name)
        .unwrap_or_else(|| panic!("unknown function in {call}"))["function"]["parameters"]
        .clone();
    let args = call["function"]["arguments"]
        .as_str()
        .expect("arguments as a JSON text");
    let verdict = validate(&[(schema.clone(), args.to_owned())]).remove(0);
    verdict.unwrap_or_else(|e| panic!("{args} against {schema}: {e}"));
    name.to_owned()
}

/// The `data:` payloads of a server-sent event stream.
fn sse_events(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect()
}

#[test]
fn tool_calls_forced_streamed_refused_and_round_tripped() {
    // Qwen2.5's template renders tools (Hermes-style <tool_call> blocks).
    let s = api_server_with(QWEN, "1024", &[]);
    let chat = |body: &Json| post(&s, "/v1/chat/completions", "", &body.to_string());
    let user = json!({"role": "user", "content": "What's the weather in Paris right now?"});

    // A named function, not streamed: one parsed call, content null.
    let r = chat(&json!({
        "messages": [user],
        "tools": weather_tools(),
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 100,
    }));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let choice = &j["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{j}");
    assert!(choice["message"]["content"].is_null(), "{j}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{j}");
    assert_eq!(check_call(&calls[0]), "get_weather");
    let prompt1 = j["usage"]["prompt_tokens"].as_u64().unwrap();

    // The call and its result go back through the template; the slot's cache still holds the
    // first prompt, so only the new turns are prefilled.
    let turn2 = json!({
        "messages": [
            user,
            {"role": "assistant", "content": null, "tool_calls": [calls[0].clone()]},
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "{\"temperature\": 21, \"sky\": \"sunny\"}"},
        ],
        "tools": weather_tools(),
        "max_tokens": 8,
    });
    let r = chat(&turn2);
    assert_eq!(r.status, 200, "{}", r.text());
    let j2 = r.json();
    let u2 = &j2["usage"];
    let cached = u2["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached >= prompt1 && cached < u2["prompt_tokens"].as_u64().unwrap(),
        "turn 2 reuses turn 1's prompt ({prompt1} tokens): {u2}"
    );
    assert!(j2["choices"][0]["message"]["content"].is_string(), "{j2}");

    // `required`, streamed: the text deltas hide the call, which comes as delta.tool_calls,
    // then the finish chunk, then [DONE].
    let r = chat(&json!({
        "messages": [user],
        "tools": weather_tools(),
        "tool_choice": "required",
        "stream": true,
        "temperature": 0.9,
        "seed": 5,
        "max_tokens": 100,
    }));
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let events = sse_events(&text);
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Json> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "", "the call is not streamed as text: {text}");
    let calls: Vec<&Json> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1, "{text}");
    assert_eq!(calls[0]["index"], 0);
    check_call(calls[0]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls", "{text}");
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 1);

    // `none`: the tools stay out of the prompt, the reply is plain content.
    let r = chat(&json!({
        "messages": [user],
        "tools": weather_tools(),
        "tool_choice": "none",
        "max_tokens": 8,
    }));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let m = &j["choices"][0]["message"];
    assert!(
        m["content"].is_string() && m.get("tool_calls").is_none(),
        "{j}"
    );
    assert_ne!(j["choices"][0]["finish_reason"], "tool_calls");
    assert!(
        j["usage"]["prompt_tokens"].as_u64().unwrap() < prompt1,
        "{j}"
    );

    // `none` and a grammar that makes the reply a call's text: still plain content, streamed
    // or not (the reply is not parsed for calls).
    let call_text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>";
    let none_call = |stream: bool| {
        let grammar = format!("start: {}", Json::from(call_text));
        chat(&json!({
            "messages": [user],
            "tools": weather_tools(),
            "tool_choice": "none",
            "grammar": grammar,
            "stream": stream,
            "max_tokens": 60,
        }))
    };
    let r = none_call(false);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let m = &j["choices"][0]["message"];
    assert_eq!(m["content"], call_text, "{j}");
    assert!(m.get("tool_calls").is_none(), "{j}");
    assert_eq!(j["choices"][0]["finish_reason"], "stop", "{j}");
    let r = none_call(true);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let events = sse_events(&text);
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Json> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, call_text, "{text}");
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()),
        "{text}"
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop", "{text}");

    // Bad tools: 400 naming the parameter.
    let err = |path: &str, body: Json, param: &str| {
        let r = post(&s, path, "", &body.to_string());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = r.json();
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
    };
    let msgs = json!([{"role": "user", "content": "x"}]);
    let path = "/v1/chat/completions";
    err(
        path,
        json!({"messages": msgs, "tools": [{"type": "function"}]}),
        "tools",
    );
    err(
        path,
        json!({"messages": msgs, "tools": "get_weather"}),
        "tools",
    );
    err(
        path,
        json!({"messages": msgs, "tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}),
        "tools",
    );
    err(
        path,
        json!({"messages": msgs, "tools": weather_tools(), "tool_choice": "sometimes"}),
        "tool_choice",
    );
    err(
        path,
        json!({"messages": msgs, "tools": weather_tools(),
               "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
        "tool_choice",
    );
    err(
        path,
        json!({"messages": msgs, "tool_choice": "required"}),
        "tool_choice",
    );
    err(
        path,
        json!({"messages": msgs, "tools": weather_tools(), "tool_choice": "required",
               "response_format": {"type": "json_object"}}),
        "tool_choice",
    );
    err(
        path,
        json!({"messages": msgs, "functions": [{"name": "f"}]}),
        "functions",
    );
    err(
        "/v1/completions",
        json!({"prompt": "x", "tools": weather_tools()}),
        "tools",
    );
}

fn health(s: &Server) -> Json {
    get(s, "/health", "").json()["models"][0].clone()
}

#[test]
fn a_closed_connection_aborts_generation() {
    let s = api_server_with(TINY, "4096", &[]);
    for stream in [true, false] {
        let body =
            format!(r#"{{"prompt":"Once upon a time","max_tokens":3000,"stream":{stream}}}"#);
        let mut c = connect(&s);
        c.write_all(
            format!(
                "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        // Wait until it generates, then hang up.
        let t = Instant::now();
        while health(&s)["active"] != 1 {
            assert!(t.elapsed() < Duration::from_secs(30), "never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        drop(c);
        let t = Instant::now();
        while health(&s)["active"] != 0 {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "stream={stream}: generation went on after the client left"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let steps = health(&s)["decode_steps"].as_u64().unwrap();
        assert!(
            steps < 3000,
            "stream={stream}: stopped early ({steps} steps)"
        );
    }
}
