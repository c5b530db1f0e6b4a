//! `chord serve`: the browser app's files and an OpenAI-compatible API, on axum.
//!
//! Why axum on hyper and tokio: hyper is the HTTP/1.1 implementation most of the Rust
//! ecosystem runs in production (request parsing with size limits, bodies framed and drained
//! properly so one request's body never reads as the next request, keep-alive, chunked
//! streaming for server-sent events), and axum adds routing, extractors, SSE and tower
//! middleware (CORS from tower-http) with little code of ours. `tiny_http` builds faster but is
//! synchronous (one thread per connection, no clean way to notice a client that went away
//! while a token stream is open) and less used. The cost is build time: a few crates more
//! than the std-only server this replaces, compiled once.
//!
//! Hardening, each with a test in tests/serve.rs:
//! * the request line and headers together may not exceed 16 KiB (hyper's read buffer; larger
//!   heads get 431), and must arrive within `--read-timeout` seconds;
//! * request bodies are read whole (bounded by `--body-limit`, in `--read-timeout`) or drained
//!   by hyper; nothing of one request is parsed as the next;
//! * at most `--max-connections` connections are served at once (more wait in the backlog);
//! * a response write that makes no progress for `--write-timeout` seconds (a client that does
//!   not read) closes the connection;
//! * no `Access-Control-Allow-Origin` on the app's files; the API answers cross-origin
//!   requests only from the `--cors-origin` origins (`*` must be asked for);
//! * the `/__control` test hooks exist only with `--test-controls`;
//! * binds 127.0.0.1 unless `--host` says otherwise; `--api-key` requires a Bearer token on
//!   /v1.

mod api;
mod files;

use crate::{io_err, BackendArg, Fail, KernelArg};
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower_http::cors::{AllowOrigin, CorsLayer};
use wasm_chord::batch::{BatchOptions, Batcher};
use wasm_chord::cpu;
use wasm_chord::engine::{Engine, LoadOptions};

/// `chord serve`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to bind (default: loopback only).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// TCP port (0 picks a free one, printed on stdout).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The folder of GGUF files served under /models/.
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
    /// Where index.html, www/, pkg/, worker/ and examples/ live.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Leave out the cross-origin isolation headers (COOP/COEP).
    #[arg(long)]
    pub no_coop_coep: bool,
    /// Answer model requests without Range support.
    #[arg(long)]
    pub no_range: bool,
    /// Mount the /__control test hooks (tests only).
    #[arg(long)]
    pub test_controls: bool,
    /// A model for the OpenAI API: PATH or ID=PATH (repeatable; the id defaults to the file
    /// name without .gguf).
    #[arg(long = "model", value_name = "[ID=]PATH")]
    pub model: Vec<String>,
    /// KV-cache size per sequence (tokens) at most.
    #[arg(long, default_value_t = 4096)]
    pub ctx: usize,
    /// Sequences decoded together at most. Default: 4 on the CPU; 1 on the GPU, where a batched
    /// step pays off only with several streams at once (docs/performance.md), and models with
    /// recurrent layers run one at a time whatever is asked.
    #[arg(long)]
    pub parallel: Option<usize>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendArg,
    #[arg(long, value_enum, default_value = "fast")]
    pub kernel: KernelArg,
    /// CPU threads (0 = one per core).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Require `Authorization: Bearer KEY` on /v1.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// An origin allowed to call the API from a browser (repeatable; `*` for any).
    #[arg(long, value_name = "ORIGIN")]
    pub cors_origin: Vec<String>,
    /// Connections served at once at most.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's head, and its body.
    #[arg(long, default_value_t = 30)]
    pub read_timeout: u64,
    /// Seconds a response write may make no progress before the connection is closed.
    #[arg(long, default_value_t = 30)]
    pub write_timeout: u64,
    /// Request bodies larger than this many bytes are refused (413).
    #[arg(long, default_value_t = 8 << 20)]
    pub body_limit: usize,
}

/// The largest request head (request line + headers) hyper buffers.
const MAX_HEAD_BYTES: usize = 16 * 1024;

pub fn run(a: &Args) -> Result<(), Fail> {
    cpu::matmul::set_threads(a.threads);
    let models = load_models(a)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Fail::Run(io_err("starting the async runtime".into())(e)))?;
    rt.block_on(serve(a, models))
        .map_err(|e| Fail::Run(io_err(format!("serving HTTP on {}", a.host))(e)))
}

/// `ID=PATH` or `PATH`.
fn model_spec(s: &str) -> (String, PathBuf) {
    match s.split_once('=') {
        Some((id, path)) if !id.is_empty() && !id.contains('/') => (id.into(), path.into()),
        _ => {
            let p = PathBuf::from(s);
            let id = p
                .file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(".gguf").to_owned())
                .unwrap_or_else(|| s.to_owned());
            (id, p)
        }
    }
}

fn load_models(a: &Args) -> Result<Vec<api::ApiModel>, Fail> {
    let mut out: Vec<api::ApiModel> = vec![];
    for spec in &a.model {
        let (id, path) = model_spec(spec);
        if out.iter().any(|m| m.id == id) {
            return Err(Fail::Usage(format!("two --model flags give the id `{id}`")));
        }
        let src = wasm_chord::source::FileSource::open(&path)?;
        // --ctx, within the model's training context (the engine refuses more).
        let header = wasm_chord::source::read_header(&src)?;
        let n_train = wasm_chord::model::Config::from_header(&header)?.n_ctx_train;
        let opts = LoadOptions {
            backend: a.backend.into(),
            kernel: a.kernel.into(),
            n_ctx: Some(a.ctx.min(n_train.max(2))),
            ..Default::default()
        };
        let engine = Engine::load(&src, &opts)?;
        let backend = match engine.adapter() {
            Some(adapter) => {
                eprintln!("chord: GPU adapter: {adapter}");
                "gpu"
            }
            None => "cpu",
        };
        let n_ctx = a.ctx.min(engine.config().n_ctx_train.max(2));
        let created = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::now())
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let parallel = a.parallel.unwrap_or(if backend == "cpu" { 4 } else { 1 });
        let batcher = Batcher::start(engine, BatchOptions { parallel, n_ctx })?;
        if let Some(why) = &batcher.serial_reason {
            eprintln!("chord: model `{id}`: --parallel {parallel} asked, {why}; serving one request at a time");
        }
        let parallel = batcher.parallel;
        eprintln!(
            "chord: model `{id}` from {} ({backend}, {parallel} parallel, {n_ctx} tokens of \
             context)",
            path.display(),
        );
        out.push(api::ApiModel {
            id,
            batcher,
            created,
            backend,
        });
    }
    Ok(out)
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
            .collect();
        AllowOrigin::list(list)
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600)),
    )
}

/// The router: the API under /v1 (and /health), the app's files everywhere else.
fn app(a: &Args, api_state: api::Shared, files: Arc<files::FileState>) -> Router {
    let mut v1 = Router::new()
        .route(
            "/v1/chat/completions",
            post(api::chat_completions).fallback(method_not_allowed),
        )
        .route(
            "/v1/completions",
            post(api::completions).fallback(method_not_allowed),
        )
        .route("/v1/models", get(api::list_models))
        .route("/v1/models/{id}", get(api::get_model))
        .route("/v1/{*rest}", any(api::unknown_route))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&api_state),
            api::auth,
        ))
        .route("/health", get(api::health))
        .with_state(api_state);
    if let Some(c) = cors(&a.cors_origin) {
        v1 = v1.layer(c);
    }
    let mut static_routes = Router::new();
    if a.test_controls {
        static_routes = static_routes.route("/__control", get(files::control));
    }
    let mut static_routes = static_routes.fallback(files::get).with_state(files);
    if !a.no_coop_coep {
        static_routes = static_routes.layer(middleware::from_fn(isolation_headers));
    }
    v1.merge(static_routes)
}

async fn method_not_allowed() -> Response {
    api::method_not_allowed()
}

/// COOP/COEP/CORP: cross-origin isolation for the app (threads and SharedArrayBuffer).
async fn isolation_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (k, v) in [
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-embedder-policy", "require-corp"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    r
}

async fn serve(a: &Args, models: Vec<api::ApiModel>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port)).await?;
    let addr = listener.local_addr()?;
    let api_state = Arc::new(api::ApiState {
        models,
        api_key: a.api_key.clone(),
        body_timeout: Duration::from_secs(a.read_timeout.max(1)),
        body_limit: a.body_limit,
    });
    let files = Arc::new(files::FileState::new(
        a.root.clone(),
        a.models.clone(),
        !a.no_range,
    ));
    let app = app(a, api_state, files);
    let host = if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    println!(
        "serving http://{host}:{}/ (models from {})",
        addr.port(),
        a.models.display()
    );
    std::io::stdout().flush()?;
    let permits = Arc::new(tokio::sync::Semaphore::new(a.max_connections.max(1)));
    let read_timeout = Duration::from_secs(a.read_timeout.max(1));
    let write_timeout = Duration::from_secs(a.write_timeout.max(1));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return Ok(());
        };
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait a little, keep serving.
                eprintln!("chord: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let mut io = tokio_io_timeout::TimeoutStream::new(tcp);
        io.set_write_timeout(Some(write_timeout));
        let io = TokioIo::new(Box::pin(io));
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(io, svc);
            let _ = conn.await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::files::{parse_range, safe_join};
    use super::model_spec;
    use std::path::{Path, PathBuf};

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    #[test]
    fn paths_and_model_ids() {
        assert!(safe_join(Path::new("/r"), "www/../x").is_none());
        assert!(safe_join(Path::new("/r"), "www/.git").is_none());
        assert_eq!(
            safe_join(Path::new("/r"), "www/app.js"),
            Some(PathBuf::from("/r/www/app.js"))
        );
        assert_eq!(
            model_spec("models/a-b.gguf"),
            ("a-b".to_owned(), PathBuf::from("models/a-b.gguf"))
        );
        assert_eq!(
            model_spec("small=models/a.gguf"),
            ("small".to_owned(), PathBuf::from("models/a.gguf"))
        );
    }
}
