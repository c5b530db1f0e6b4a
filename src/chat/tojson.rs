//! `tojson` with llama.cpp's exact output.
//!
//! Hand-written: minijinja's built-in `tojson` (serde_json) writes compact `,`/`:` separators,
//! escapes `<`, `>`, `&`, `'` for HTML, and sorts or keeps keys per build feature. llama.cpp's
//! (nlohmann `dump` wrapped as Python's `json.dumps`) writes `", "` and `": "`, keeps non-ASCII
//! unless `ensure_ascii`, keeps key order, and prints floats as C++ `ostream << double` (`%g`).
//! Tool definitions are rendered into prompts with it, so each byte shows in the tokens; neither
//! serde_json's formatters nor `minijinja-contrib` can be configured to match.

use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::Value;

use super::error::invalid_op;

/// C++ `ostream << double` with the default precision (`%g`, 6 significant digits).
pub(super) fn float_to_json_like_cpp(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{f:.5e}"); // d.ddddde±x, rounded to 6 significant digits
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = usize::try_from(5 - exp).unwrap_or(0);
        trim(&format!("{f:.decimals$}"))
    }
}

/// `tojson` as llama.cpp implements it: `value | tojson(indent=None, ensure_ascii=False,
/// separators=None, sort_keys=False)`. Without indent the separators are `", "` and `": "`
/// (Python's `json.dumps`); with indent, `","` and `": "`. Keys keep their order. A positional
/// integer argument is the indent (Jinja2), a positional boolean is `ensure_ascii`.
pub(super) fn tojson(value: &Value, args: &[Value]) -> Result<Value, minijinja::Error> {
    let mut indent: Option<usize> = None;
    let mut ensure_ascii = false;
    let mut separators: Option<(String, String)> = None;
    let mut sort_keys = false;
    for arg in args {
        if arg.is_kwargs() {
            let kwargs = Kwargs::try_from(arg.clone())?;
            for key in kwargs.args() {
                let v: Value = kwargs.get(key)?;
                match key {
                    "indent" => indent = parse_indent(&v)?,
                    "ensure_ascii" => ensure_ascii = v.is_true(),
                    "separators" => separators = parse_separators(&v)?,
                    "sort_keys" => sort_keys = v.is_true(),
                    other => return Err(invalid_op(format!("tojson: unknown argument `{other}`"))),
                }
            }
            kwargs.assert_all_used()?;
        } else if arg.kind() == ValueKind::Bool {
            ensure_ascii = arg.is_true();
        } else {
            indent = parse_indent(arg)?;
        }
    }
    let (item_sep, key_sep) = separators.unwrap_or_else(|| {
        (
            if indent.is_some() { "," } else { ", " }.to_string(),
            ": ".to_string(),
        )
    });
    let mut out = String::new();
    let fmt = JsonFormat {
        indent,
        item_sep: &item_sep,
        key_sep: &key_sep,
        sort_keys,
    };
    write_json(value, 0, &fmt, &mut out, 0)?;
    if ensure_ascii {
        out = json_ensure_ascii(&out);
    }
    Ok(Value::from(out))
}

fn parse_indent(v: &Value) -> Result<Option<usize>, minijinja::Error> {
    if v.is_none() || v.is_undefined() {
        return Ok(None);
    }
    if let Some(s) = v.as_str() {
        // Python accepts a string indent; llama.cpp only ints. Treat it as its width.
        return Ok(Some(s.chars().count()));
    }
    match v.as_i64() {
        Some(n) if n < 0 => Ok(Some(0)),
        Some(n) => Ok(Some(usize::try_from(n).unwrap_or(0).min(64))),
        None => Err(invalid_op("tojson: indent must be an integer")),
    }
}

fn parse_separators(v: &Value) -> Result<Option<(String, String)>, minijinja::Error> {
    if v.is_none() || v.is_undefined() {
        return Ok(None);
    }
    let parts: Vec<String> = v
        .try_iter()
        .map_err(|_| invalid_op("tojson: separators must be a pair of strings"))?
        .map(|p| {
            p.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| p.to_string())
        })
        .collect();
    match parts.as_slice() {
        [a, b] => Ok(Some((a.clone(), b.clone()))),
        _ => Err(invalid_op("tojson: separators must be a pair of strings")),
    }
}

struct JsonFormat<'a> {
    indent: Option<usize>,
    item_sep: &'a str,
    key_sep: &'a str,
    sort_keys: bool,
}

const MAX_JSON_DEPTH: usize = 256;

fn write_json(
    value: &Value,
    level: usize,
    fmt: &JsonFormat<'_>,
    out: &mut String,
    depth: usize,
) -> Result<(), minijinja::Error> {
    if depth > MAX_JSON_DEPTH {
        return Err(invalid_op("tojson: value is nested too deeply"));
    }
    let newline = |out: &mut String| {
        if fmt.indent.is_some() {
            out.push('\n');
        }
    };
    let pad = |out: &mut String, lvl: usize| {
        if let Some(n) = fmt.indent {
            for _ in 0..n * lvl {
                out.push(' ');
            }
        }
    };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if value.is_integer() {
                let _ = write!(out, "{value}");
            } else {
                let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                out.push_str(&float_to_json_like_cpp(f));
            }
        }
        ValueKind::String => write_json_string(value.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            out.push('[');
            if !items.is_empty() {
                newline(out);
                for (i, item) in items.iter().enumerate() {
                    pad(out, level + 1);
                    write_json(item, level + 1, fmt, out, depth + 1)?;
                    if i + 1 < items.len() {
                        out.push_str(fmt.item_sep);
                    }
                    newline(out);
                }
                pad(out, level);
            }
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if fmt.sort_keys {
                keys.sort_by_key(key_text);
            }
            out.push('{');
            if !keys.is_empty() {
                newline(out);
                for (i, key) in keys.iter().enumerate() {
                    pad(out, level + 1);
                    write_json_string(&key_text(key), out);
                    out.push_str(fmt.key_sep);
                    let v = value.get_item(key).unwrap_or_default();
                    write_json(&v, level + 1, fmt, out, depth + 1)?;
                    if i + 1 < keys.len() {
                        out.push_str(fmt.item_sep);
                    }
                    newline(out);
                }
                pad(out, level);
            }
            out.push('}');
        }
        _ => out.push_str("null"),
    }
    Ok(())
}

fn key_text(key: &Value) -> String {
    match key.as_str() {
        Some(s) => s.to_string(),
        None => key.to_string(),
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Escapes every non-ASCII character inside JSON strings as `\uXXXX` (surrogate pairs above the
/// BMP), leaving the layout alone.
fn json_ensure_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut buf = [0u16; 2];
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut buf) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}
