//! The browser app's files: `index.html`, `www/`, `pkg/`, `worker/`, `examples/` from the
//! repository root, `/models/<file>` from the models folder and `/models/` as a JSON listing.
//!
//! Range (one range, 206/416), ETag and If-None-Match (304), If-Range, Last-Modified, the MIME
//! types the app needs, and (by default) the COOP/COEP/CORP headers that cross-origin
//! isolation needs. No `Access-Control-Allow-Origin`: the page is same-origin.
//!
//! Test controls (`--test-controls` only): `GET /__control?models=off|on&range=off|on
//! &rate=BYTES_PER_S&drop_after=BYTES&sent=0` switch the model route off, Range support off,
//! throttle model bodies, cut the next model response after so many body bytes, or reset the
//! count of model body bytes sent; it answers the current state (with `sent`) as JSON.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub struct FileState {
    pub root: PathBuf,
    pub models: PathBuf,
    pub models_on: AtomicBool,
    pub range_on: AtomicBool,
    /// Bytes per second for model bodies (0 = unthrottled).
    pub rate: AtomicU64,
    /// Cut the next model body after this many bytes (u64::MAX = never).
    pub drop_after: AtomicU64,
    /// Model body bytes written since start (or the last `sent=0`): the resume tests count them.
    pub model_bytes: Arc<AtomicU64>,
}

impl FileState {
    pub fn new(root: PathBuf, models: PathBuf, range: bool) -> Self {
        FileState {
            root,
            models,
            models_on: AtomicBool::new(true),
            range_on: AtomicBool::new(range),
            rate: AtomicU64::new(0),
            drop_after: AtomicU64::new(u64::MAX),
            model_bytes: Arc::new(AtomicU64::new(0)),
        }
    }
}

type Shared = Arc<FileState>;

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{msg}\n")));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json(body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Only plain path segments: no `..`, no hidden files, no empty segments.
pub fn safe_join(base: &Path, rel: &str) -> Option<PathBuf> {
    let mut p = base.to_path_buf();
    for seg in rel.split('/') {
        if seg.is_empty() || seg.starts_with('.') || seg.contains('\\') {
            return None;
        }
        p.push(seg);
    }
    Some(p)
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` (one range) → inclusive (start, end); Err(()) = 416.
pub fn parse_range(h: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multiple ranges: answer with the whole file
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end: u64 = if b.is_empty() {
            u64::MAX
        } else {
            b.parse().ok()?
        };
        if start >= size || end < start {
            return Some(Err(()));
        }
        (start, end.min(size - 1))
    };
    Some(Ok(r))
}

/// `GET|HEAD` of any path that is not the API: app files and models.
pub async fn get(
    State(st): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    if method == Method::OPTIONS {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        return r;
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        return r;
    }
    let head = method == Method::HEAD;
    let Ok(path) = percent_encoding::percent_decode_str(uri.path()).decode_utf8() else {
        return text(StatusCode::BAD_REQUEST, "the path is not UTF-8");
    };
    let path = path.as_ref();
    let mut r = if path == "/models" || path == "/models/" {
        if !st.models_on.load(Ordering::SeqCst) {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model route is switched off",
            )
        } else {
            listing(&st.models)
        }
    } else if let Some(rel) = path.strip_prefix("/models/") {
        if !st.models_on.load(Ordering::SeqCst) {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model route is switched off",
            )
        } else {
            match safe_join(&st.models, rel) {
                Some(file) => send_file(&st, &headers, &file, true).await,
                None => text(StatusCode::FORBIDDEN, "bad path"),
            }
        }
    } else {
        let rel = match path {
            "/" => "index.html",
            p => p.trim_start_matches('/'),
        };
        let allowed = rel == "index.html"
            || rel == "favicon.ico"
            || ["www/", "pkg/", "worker/", "examples/"]
                .iter()
                .any(|d| rel.starts_with(d));
        if !allowed {
            text(StatusCode::NOT_FOUND, "not found")
        } else {
            match safe_join(&st.root, rel) {
                Some(file) => send_file(&st, &headers, &file, false).await,
                None => text(StatusCode::FORBIDDEN, "bad path"),
            }
        }
    };
    if head {
        // Keep the headers (Content-Length included), drop the body.
        let len = r.headers().get(header::CONTENT_LENGTH).cloned();
        *r.body_mut() = Body::empty();
        if let Some(len) = len {
            r.headers_mut().insert(header::CONTENT_LENGTH, len);
        }
    }
    r
}

/// The test hooks (mounted only with `--test-controls`).
pub async fn control(
    State(st): State<Shared>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response<Body> {
    for (k, v) in q {
        let on = matches!(v.as_str(), "on" | "1" | "true");
        match k.as_str() {
            "models" => st.models_on.store(on, Ordering::SeqCst),
            "range" => st.range_on.store(on, Ordering::SeqCst),
            "rate" => st.rate.store(v.parse().unwrap_or(0), Ordering::SeqCst),
            "drop_after" => st
                .drop_after
                .store(v.parse().unwrap_or(u64::MAX), Ordering::SeqCst),
            "sent" => st
                .model_bytes
                .store(v.parse().unwrap_or(0), Ordering::SeqCst),
            _ => return text(StatusCode::BAD_REQUEST, &format!("unknown control `{k}`")),
        }
    }
    json(
        serde_json::json!({
            "models": st.models_on.load(Ordering::SeqCst),
            "range": st.range_on.load(Ordering::SeqCst),
            "rate": st.rate.load(Ordering::SeqCst),
            "sent": st.model_bytes.load(Ordering::SeqCst),
        })
        .to_string(),
    )
}

fn listing(models: &Path) -> Response<Body> {
    let mut items = vec![];
    if let Ok(rd) = std::fs::read_dir(models) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".gguf") {
                continue;
            }
            let Ok(md) = std::fs::metadata(e.path()) else {
                continue;
            };
            if md.is_file() {
                items.push((name, md.len()));
            }
        }
    }
    items.sort();
    let body: Vec<serde_json::Value> = items
        .iter()
        .map(|(n, s)| serde_json::json!({"name": n, "size": s, "url": format!("/models/{n}")}))
        .collect();
    json(serde_json::Value::Array(body).to_string())
}

async fn send_file(st: &FileState, req: &HeaderMap, file: &Path, is_model: bool) -> Response<Body> {
    let md = match tokio::fs::metadata(file).await {
        Ok(m) if m.is_file() => m,
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    };
    let Ok(mut f) = tokio::fs::File::open(file).await else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let size = md.len();
    let modified = md.modified().unwrap_or(UNIX_EPOCH);
    let mtime = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"{size:x}-{mtime:x}\"");
    let mut r = Response::new(Body::empty());
    let h = r.headers_mut();
    let hv = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime(file)));
    h.insert(header::ETAG, hv(&etag));
    h.insert(
        header::LAST_MODIFIED,
        hv(&httpdate::fmt_http_date(
            UNIX_EPOCH + Duration::from_secs(mtime),
        )),
    );
    // The app shell is revalidated on every load; model bytes go to IndexedDB, not the HTTP cache.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if is_model { "no-store" } else { "no-cache" }),
    );
    if file.extension().is_some_and(|e| e == "js") {
        h.insert("service-worker-allowed", HeaderValue::from_static("/"));
    }
    let get = |name: header::HeaderName| req.get(name).and_then(|v| v.to_str().ok());
    if !is_model && get(header::IF_NONE_MATCH) == Some(etag.as_str()) {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        return r;
    }
    let range_on = !is_model || st.range_on.load(Ordering::SeqCst);
    let (mut start, mut end) = (0, size.saturating_sub(1));
    if range_on {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let if_range_ok = get(header::IF_RANGE).is_none_or(|v| v == etag);
        if let (Some(range), true) = (get(header::RANGE), if_range_ok) {
            match parse_range(range, size) {
                Some(Ok((a, b))) => {
                    *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                    (start, end) = (a, b);
                    let h = r.headers_mut();
                    h.insert(header::CONTENT_RANGE, hv(&format!("bytes {a}-{b}/{size}")));
                }
                Some(Err(())) => {
                    *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                    let h = r.headers_mut();
                    h.insert(header::CONTENT_RANGE, hv(&format!("bytes */{size}")));
                    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
                    return r;
                }
                None => {}
            }
        }
    }
    let len = if size == 0 { 0 } else { end - start + 1 };
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if len == 0 {
        return r;
    }
    if f.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "seek failed");
    }
    *r.body_mut() = if is_model {
        let drop_after = st.drop_after.swap(u64::MAX, Ordering::SeqCst);
        let rate = st.rate.load(Ordering::SeqCst);
        file_body(f, len, drop_after, rate, Some(Arc::clone(&st.model_bytes)))
    } else {
        file_body(f, len, u64::MAX, 0, None)
    };
    r
}

/// `len` bytes of `f` from where it stands, read as they are sent. For models: counted in
/// `sent_total`, throttled to `rate` bytes/s (0 = off), and cut (the connection dropped) after
/// `drop_after` bytes.
fn file_body(
    f: tokio::fs::File,
    len: u64,
    drop_after: u64,
    rate: u64,
    sent_total: Option<Arc<AtomicU64>>,
) -> Body {
    struct S {
        f: tokio::fs::File,
        left: u64,
        sent: u64,
        t0: Instant,
        /// Fail the next poll (drop_after reached).
        cut: bool,
    }
    let s = S {
        f,
        left: len,
        sent: 0,
        t0: Instant::now(),
        cut: false,
    };
    let stream = futures_util::stream::unfold(s, move |mut s| {
        let sent_total = sent_total.clone();
        let count = move |n: usize| {
            if let Some(t) = &sent_total {
                t.fetch_add(n as u64, Ordering::SeqCst);
            }
        };
        async move {
            if s.cut {
                s.cut = false;
                s.left = 0;
                let cut = std::io::Error::other("test control: drop_after");
                return Some((Err(cut), s));
            }
            if s.left == 0 {
                return None;
            }
            if rate > 0 {
                let due = Duration::from_secs_f64(s.sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(s.t0.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            let want = (256 * 1024u64).min(s.left) as usize;
            let mut buf = vec![0u8; want];
            let n = match s.f.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => return Some((Err(e), s)),
            };
            buf.truncate(n);
            if s.sent + n as u64 > drop_after {
                // Send what is allowed, then fail the body: hyper drops the connection.
                let keep = (drop_after - s.sent) as usize;
                buf.truncate(keep);
                count(keep);
                s.cut = true;
                return Some((Ok(Bytes::from(buf)), s));
            }
            count(n);
            s.sent += n as u64;
            s.left -= n as u64;
            Some((Ok(Bytes::from(buf)), s))
        }
    });
    Body::from_stream(stream)
}
