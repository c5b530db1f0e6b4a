//! `chord serve`: a small std-only HTTP/1.1 dev server for the browser app.
//!
//! Serves `index.html`, `www/`, `pkg/`, `worker/`, `examples/` from the repository root and `/models/<file>`
//! from the models folder, with Range (206), ETag, Last-Modified, Content-Length, the right MIME
//! types and (by default) the COOP/COEP headers that cross-origin isolation needs. `/models/` is
//! a JSON listing. Binds 127.0.0.1 only. Included into the CLI with `#[path]`; native only.
//!
//! Test controls (loopback only, like everything here): `GET /__control?models=off|on
//! &range=off|on&rate=BYTES_PER_S&drop_after=BYTES&sent=0` switch the model route off, Range
//! support off, throttle model bodies, cut the next model response after so many body bytes, or
//! reset the count of model body bytes sent; it answers the current state (with `sent`) as JSON.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// `chord serve`.
#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(a: &Args) -> Result<(), crate::Fail> {
    serve(&ServeOptions {
        port: a.port,
        root: a.root.clone(),
        models: a.models.clone(),
        coop_coep: !a.no_coop_coep,
        range: !a.no_range,
    })
    .map_err(|e| crate::Fail::Run(crate::io_err("serving HTTP on 127.0.0.1".into())(e)))
}

pub struct ServeOptions {
    /// 0 picks a free port (printed on stdout).
    pub port: u16,
    /// Where index.html, www/, pkg/, worker/ and examples/ live.
    pub root: PathBuf,
    pub models: PathBuf,
    pub coop_coep: bool,
    pub range: bool,
}

struct State {
    root: PathBuf,
    models: PathBuf,
    coop_coep: bool,
    models_on: AtomicBool,
    range_on: AtomicBool,
    /// Bytes per second for model bodies (0 = unthrottled).
    rate: AtomicU64,
    /// Cut the next model body after this many bytes (u64::MAX = never).
    drop_after: AtomicU64,
    /// Model body bytes written since start (or the last `sent=0`): the resume tests count them.
    model_bytes: AtomicU64,
}

/// Run until the process is killed. Prints `serving http://127.0.0.1:PORT/` once listening.
pub fn serve(opts: &ServeOptions) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", opts.port))?;
    let port = listener.local_addr()?.port();
    let state = Arc::new(State {
        root: opts.root.clone(),
        models: opts.models.clone(),
        coop_coep: opts.coop_coep,
        models_on: AtomicBool::new(true),
        range_on: AtomicBool::new(opts.range),
        rate: AtomicU64::new(0),
        drop_after: AtomicU64::new(u64::MAX),
        model_bytes: AtomicU64::new(0),
    });
    println!(
        "serving http://127.0.0.1:{port}/ (models from {})",
        opts.models.display()
    );
    std::io::stdout().flush()?;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let state = Arc::clone(&state);
        std::thread::spawn(move || {
            let _ = handle_connection(conn, &state);
        });
    }
    Ok(())
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_owned(),
        path: percent_decode(path),
        query: query.to_owned(),
        headers: vec![],
    };
    let mut total = line.len();
    loop {
        let mut h = String::new();
        let n = r.read_line(&mut h)?;
        total += n;
        if n == 0 || total > 64 * 1024 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            req.headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Ok(Some(req))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle_connection(conn: TcpStream, state: &State) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    // Keep-alive: serve requests on this connection until the client closes it.
    while let Some(req) = read_request(&mut reader)? {
        let keep = respond(&req, &mut out, state)?;
        out.flush()?;
        if !keep {
            break;
        }
    }
    Ok(())
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_head(out: &mut TcpStream, r: &Response, state: &State, len: u64) -> std::io::Result<()> {
    let mut s = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (k, v) in &r.headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str(&format!("Content-Length: {len}\r\n"));
    if state.coop_coep {
        s.push_str("Cross-Origin-Opener-Policy: same-origin\r\n");
        s.push_str("Cross-Origin-Embedder-Policy: require-corp\r\n");
        s.push_str("Cross-Origin-Resource-Policy: same-origin\r\n");
    }
    s.push_str("Access-Control-Allow-Origin: *\r\n");
    s.push_str(
        "Access-Control-Expose-Headers: Content-Range, Content-Length, ETag, Last-Modified, Accept-Ranges\r\n",
    );
    s.push_str("\r\n");
    out.write_all(s.as_bytes())
}

fn simple(
    out: &mut TcpStream,
    state: &State,
    head_only: bool,
    status: u16,
    ctype: &str,
    body: &[u8],
) -> std::io::Result<bool> {
    let r = Response {
        status,
        headers: vec![
            ("Content-Type", ctype.to_owned()),
            ("Cache-Control", "no-store".into()),
        ],
    };
    write_head(out, &r, state, body.len() as u64)?;
    if !head_only {
        out.write_all(body)?;
    }
    Ok(true)
}

fn error(
    out: &mut TcpStream,
    state: &State,
    head: bool,
    status: u16,
    msg: &str,
) -> std::io::Result<bool> {
    simple(
        out,
        state,
        head,
        status,
        "text/plain; charset=utf-8",
        format!("{msg}\n").as_bytes(),
    )
}

fn mime(path: &Path) -> &'static str {
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
fn safe_join(base: &Path, rel: &str) -> Option<PathBuf> {
    let mut p = base.to_path_buf();
    for seg in rel.split('/') {
        if seg.is_empty() || seg.starts_with('.') || seg.contains('\\') {
            return None;
        }
        p.push(seg);
    }
    Some(p)
}

fn json_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

fn respond(req: &Request, out: &mut TcpStream, state: &State) -> std::io::Result<bool> {
    let head = req.method == "HEAD";
    if req.method == "OPTIONS" {
        let r = Response {
            status: 204,
            headers: vec![
                ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS".into()),
                ("Access-Control-Allow-Headers", "Range, If-Range".into()),
            ],
        };
        write_head(out, &r, state, 0)?;
        return Ok(true);
    }
    if req.method != "GET" && !head {
        return error(out, state, head, 405, "only GET and HEAD");
    }
    let path = req.path.as_str();
    if path == "/__control" {
        return control(req, out, state);
    }
    if path == "/models" || path == "/models/" {
        if !state.models_on.load(Ordering::SeqCst) {
            return error(out, state, head, 503, "the model route is switched off");
        }
        return listing(out, state, head);
    }
    if let Some(rel) = path.strip_prefix("/models/") {
        if !state.models_on.load(Ordering::SeqCst) {
            return error(out, state, head, 503, "the model route is switched off");
        }
        let Some(file) = safe_join(&state.models, rel) else {
            return error(out, state, head, 403, "bad path");
        };
        return send_file(req, out, state, &file, true);
    }
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
        return error(out, state, head, 404, "not found");
    }
    let Some(file) = safe_join(&state.root, rel) else {
        return error(out, state, head, 403, "bad path");
    };
    send_file(req, out, state, &file, false)
}

fn control(req: &Request, out: &mut TcpStream, state: &State) -> std::io::Result<bool> {
    for kv in req.query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let on = matches!(v, "on" | "1" | "true");
        match k {
            "models" => state.models_on.store(on, Ordering::SeqCst),
            "range" => state.range_on.store(on, Ordering::SeqCst),
            "rate" => state.rate.store(v.parse().unwrap_or(0), Ordering::SeqCst),
            "drop_after" => state
                .drop_after
                .store(v.parse().unwrap_or(u64::MAX), Ordering::SeqCst),
            "sent" => state
                .model_bytes
                .store(v.parse().unwrap_or(0), Ordering::SeqCst),
            _ => return error(out, state, false, 400, &format!("unknown control `{k}`")),
        }
    }
    let body = format!(
        "{{\"models\":{},\"range\":{},\"rate\":{},\"sent\":{}}}",
        state.models_on.load(Ordering::SeqCst),
        state.range_on.load(Ordering::SeqCst),
        state.rate.load(Ordering::SeqCst),
        state.model_bytes.load(Ordering::SeqCst)
    );
    simple(out, state, false, 200, "application/json", body.as_bytes())
}

fn listing(out: &mut TcpStream, state: &State, head: bool) -> std::io::Result<bool> {
    let mut items = vec![];
    if let Ok(rd) = std::fs::read_dir(&state.models) {
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
    let body: Vec<String> = items
        .iter()
        .map(|(n, s)| {
            format!(
                "{{\"name\":\"{}\",\"size\":{s},\"url\":\"/models/{}\"}}",
                json_escape(n),
                json_escape(n)
            )
        })
        .collect();
    let body = format!("[{}]", body.join(","));
    simple(out, state, head, 200, "application/json", body.as_bytes())
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` (one range) → inclusive (start, end); Err(()) = 416.
fn parse_range(h: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
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

fn send_file(
    req: &Request,
    out: &mut TcpStream,
    state: &State,
    file: &Path,
    is_model: bool,
) -> std::io::Result<bool> {
    let head = req.method == "HEAD";
    let md = match std::fs::metadata(file) {
        Ok(m) if m.is_file() => m,
        _ => return error(out, state, head, 404, "not found"),
    };
    let Ok(mut f) = std::fs::File::open(file) else {
        return error(out, state, head, 404, "not found");
    };
    let size = md.len();
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"{size:x}-{mtime:x}\"");
    let mut headers = vec![
        ("Content-Type", mime(file).to_owned()),
        ("ETag", etag.clone()),
        ("Last-Modified", http_date(mtime)),
        // The app shell is revalidated on every load; model bytes go to IndexedDB, not the HTTP cache.
        (
            "Cache-Control",
            if is_model { "no-store" } else { "no-cache" }.into(),
        ),
    ];
    if file.extension().is_some_and(|e| e == "js") {
        headers.push(("Service-Worker-Allowed", "/".into()));
    }
    if !is_model && req.header("If-None-Match") == Some(etag.as_str()) {
        let r = Response {
            status: 304,
            headers,
        };
        write_head(out, &r, state, 0)?;
        return Ok(true);
    }
    let range_on = !is_model || state.range_on.load(Ordering::SeqCst);
    let mut status = 200;
    let (mut start, mut end) = (0, size.saturating_sub(1));
    if range_on {
        headers.push(("Accept-Ranges", "bytes".into()));
        let if_range_ok = req.header("If-Range").is_none_or(|v| v == etag);
        if let (Some(h), true) = (req.header("Range"), if_range_ok) {
            match parse_range(h, size) {
                Some(Ok((a, b))) => {
                    status = 206;
                    (start, end) = (a, b);
                    headers.push(("Content-Range", format!("bytes {a}-{b}/{size}")));
                }
                Some(Err(())) => {
                    headers.push(("Content-Range", format!("bytes */{size}")));
                    let r = Response {
                        status: 416,
                        headers,
                    };
                    write_head(out, &r, state, 0)?;
                    return Ok(true);
                }
                None => {}
            }
        }
    }
    let len = if size == 0 { 0 } else { end - start + 1 };
    write_head(out, &Response { status, headers }, state, len)?;
    if head || len == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::Start(start))?;
    let drop_after = if is_model {
        state.drop_after.swap(u64::MAX, Ordering::SeqCst)
    } else {
        u64::MAX
    };
    let mut left = len;
    let mut sent = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let t0 = Instant::now();
    while left > 0 {
        let want = (buf.len() as u64).min(left) as usize;
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        if sent + n as u64 > drop_after {
            let keep = (drop_after - sent) as usize;
            out.write_all(&buf[..keep])?;
            out.flush()?;
            state.model_bytes.fetch_add(keep as u64, Ordering::SeqCst);
            let _ = out.shutdown(std::net::Shutdown::Both);
            return Ok(false);
        }
        out.write_all(&buf[..n])?;
        if is_model {
            state.model_bytes.fetch_add(n as u64, Ordering::SeqCst);
        }
        sent += n as u64;
        left -= n as u64;
        let rate = if is_model {
            state.rate.load(Ordering::SeqCst)
        } else {
            0
        };
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(true)
}

/// RFC 7231 date (`Sun, 06 Nov 1994 08:49:37 GMT`) from Unix seconds.
fn http_date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mn = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1) as usize];
    format!("{wd}, {d:02} {mn} {y} {h:02}:{m:02}:{s:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn dates_and_paths() {
        assert_eq!(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert!(safe_join(Path::new("/r"), "www/../x").is_none());
        assert!(safe_join(Path::new("/r"), "www/.git").is_none());
        assert_eq!(
            safe_join(Path::new("/r"), "www/app.js"),
            Some(PathBuf::from("/r/www/app.js"))
        );
        assert_eq!(percent_decode("/a%20b%zz"), "/a b%zz");
    }
}
