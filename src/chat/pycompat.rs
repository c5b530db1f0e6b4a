//! Python methods on strings, dicts and lists, for templates written against Jinja2/transformers.
//!
//! Hand-written rather than `minijinja-contrib`'s `pycompat`: llama.cpp's engine differs from
//! Python there, and its output is the reference: case mapping changes ASCII letters only,
//! `title` starts words after whitespace only, `strip` removes C-locale whitespace, and it has
//! methods (`format`, `count`, list `index`, ...) that contrib leaves out or behaves differently on.

use minijinja::value::{from_args, ValueKind};
use minijinja::{ErrorKind, State, Value};

use super::environment::display_like_llama_cpp;
use super::error::invalid_op;

pub(super) fn call_method(
    _state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, minijinja::Error> {
    match value.kind() {
        ValueKind::String => string_method(value.as_str().unwrap_or_default(), method, args),
        ValueKind::Map => map_method(value, method, args),
        ValueKind::Seq | ValueKind::Iterable => seq_method(value, method, args),
        _ => Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
    }
}

/// C `isspace` in the "C" locale, which llama.cpp's `strip` and `title` use.
fn is_py_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r')
}

pub(super) fn strip<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let pred = |c: char| match chars {
        Some(set) => set.contains(c),
        None => is_py_space(c),
    };
    let mut out = s;
    if left {
        out = out.trim_start_matches(pred);
    }
    if right {
        out = out.trim_end_matches(pred);
    }
    out
}

fn prefixes(v: &Value) -> Result<Vec<String>, minijinja::Error> {
    if let Some(s) = v.as_str() {
        return Ok(vec![s.to_string()]);
    }
    if matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable) {
        return v
            .try_iter()?
            .map(|p| {
                p.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid_op("startswith/endswith: expected strings"))
            })
            .collect();
    }
    Err(invalid_op(
        "startswith/endswith: expected a string or a tuple of strings",
    ))
}

/// Python's `str.split(sep=None, maxsplit=-1)`.
pub(super) fn split(
    s: &str,
    sep: Option<&str>,
    maxsplit: i64,
) -> Result<Vec<String>, minijinja::Error> {
    match sep {
        Some("") => Err(invalid_op("split: empty separator")),
        Some(sep) => Ok(if maxsplit < 0 {
            s.split(sep).map(str::to_string).collect()
        } else {
            s.splitn(
                usize::try_from(maxsplit)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
                sep,
            )
            .map(str::to_string)
            .collect()
        }),
        None => {
            let mut out = Vec::new();
            let mut rest = s.trim_start_matches(is_py_space);
            while !rest.is_empty() {
                if maxsplit >= 0 && out.len() as i64 >= maxsplit {
                    out.push(rest.to_string());
                    break;
                }
                match rest.find(is_py_space) {
                    Some(i) => {
                        out.push(rest[..i].to_string());
                        rest = rest[i..].trim_start_matches(is_py_space);
                    }
                    None => {
                        out.push(rest.to_string());
                        break;
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Python's `str.rsplit(sep=None, maxsplit=-1)`.
pub(super) fn rsplit(
    s: &str,
    sep: Option<&str>,
    maxsplit: i64,
) -> Result<Vec<String>, minijinja::Error> {
    let mut out = match sep {
        Some("") => return Err(invalid_op("rsplit: empty separator")),
        Some(sep) => {
            if maxsplit < 0 {
                s.rsplit(sep).map(str::to_string).collect::<Vec<_>>()
            } else {
                s.rsplitn(
                    usize::try_from(maxsplit)
                        .unwrap_or(usize::MAX)
                        .saturating_add(1),
                    sep,
                )
                .map(str::to_string)
                .collect()
            }
        }
        None => {
            let mut out = Vec::new();
            let mut rest = s.trim_end_matches(is_py_space);
            while !rest.is_empty() {
                if maxsplit >= 0 && out.len() as i64 >= maxsplit {
                    out.push(rest.to_string());
                    break;
                }
                match rest.rfind(is_py_space) {
                    Some(i) => {
                        let ws_len = rest[i..].chars().next().map_or(1, char::len_utf8);
                        out.push(rest[i + ws_len..].to_string());
                        rest = rest[..i].trim_end_matches(is_py_space);
                    }
                    None => {
                        out.push(rest.to_string());
                        break;
                    }
                }
            }
            out
        }
    };
    out.reverse();
    Ok(out)
}

/// `str.title()` as llama.cpp implements it: the first character of each
/// whitespace-separated word uppercased, the rest lowercased, ASCII letters only (Python also
/// starts a word after any uncased character, as in `"they'Re"`, and maps all letters).
pub(super) fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if is_py_space(c) {
            start = true;
            out.push(c);
        } else if start {
            start = false;
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// `str.capitalize()` as llama.cpp implements it (ASCII letters only).
pub(super) fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => {
            let mut out = String::with_capacity(s.len());
            out.push(first.to_ascii_uppercase());
            out.push_str(&chars.as_str().to_ascii_lowercase());
            out
        }
        None => String::new(),
    }
}

fn char_index(s: &str, byte_index: usize) -> i64 {
    s[..byte_index].chars().count() as i64
}

fn strings(list: Vec<String>) -> Value {
    Value::from(list.into_iter().map(Value::from).collect::<Vec<_>>())
}

fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Value, minijinja::Error> {
    let v = match method {
        "strip" | "lstrip" | "rstrip" => {
            let (chars,): (Option<&str>,) = from_args(args)?;
            let out = match method {
                "strip" => strip(s, chars, true, true),
                "lstrip" => strip(s, chars, true, false),
                _ => strip(s, chars, false, true),
            };
            Value::from(out)
        }
        "startswith" | "endswith" => {
            let (prefix,): (Value,) = from_args(args)?;
            let list = prefixes(&prefix)?;
            let hit = if method == "startswith" {
                list.iter().any(|p| s.starts_with(p.as_str()))
            } else {
                list.iter().any(|p| s.ends_with(p.as_str()))
            };
            Value::from(hit)
        }
        "split" | "rsplit" => {
            let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
            let parts = if method == "split" {
                split(s, sep, maxsplit.unwrap_or(-1))?
            } else {
                rsplit(s, sep, maxsplit.unwrap_or(-1))?
            };
            strings(parts)
        }
        "splitlines" => {
            let (keepends,): (Option<bool>,) = from_args(args)?;
            let parts: Vec<String> = if keepends.unwrap_or(false) {
                s.split_inclusive('\n').map(str::to_string).collect()
            } else {
                s.lines().map(str::to_string).collect()
            };
            strings(parts)
        }
        "replace" => {
            let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
            match count {
                Some(n) if n >= 0 => {
                    Value::from(s.replacen(old, new, usize::try_from(n).unwrap_or(0)))
                }
                _ => Value::from(s.replace(old, new)),
            }
        }
        "upper" => Value::from(s.to_ascii_uppercase()),
        "lower" => Value::from(s.to_ascii_lowercase()),
        "title" => Value::from(title(s)),
        "capitalize" => Value::from(capitalize(s)),
        "swapcase" => Value::from(
            s.chars()
                .map(|c| {
                    if c.is_ascii_uppercase() {
                        c.to_ascii_lowercase()
                    } else {
                        c.to_ascii_uppercase()
                    }
                })
                .collect::<String>(),
        ),
        "find" | "rfind" | "index" | "rindex" => {
            let (sub,): (&str,) = from_args(args)?;
            let pos = if method.starts_with('r') {
                s.rfind(sub)
            } else {
                s.find(sub)
            };
            match pos {
                Some(p) => Value::from(char_index(s, p)),
                None if method.ends_with("find") => Value::from(-1),
                None => return Err(invalid_op("substring not found")),
            }
        }
        "count" => {
            let (sub,): (&str,) = from_args(args)?;
            if sub.is_empty() {
                Value::from(s.chars().count() + 1)
            } else {
                Value::from(s.matches(sub).count())
            }
        }
        "join" => {
            let (items,): (Value,) = from_args(args)?;
            let parts = items
                .try_iter()?
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid_op("join: expected a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Value::from(parts.join(s))
        }
        "format" => Value::from(format_braces(s, args)?),
        "isdigit" | "isnumeric" | "isdecimal" => {
            Value::from(!s.is_empty() && s.chars().all(|c| c.is_numeric()))
        }
        "isalpha" => Value::from(!s.is_empty() && s.chars().all(char::is_alphabetic)),
        "isalnum" => Value::from(!s.is_empty() && s.chars().all(char::is_alphanumeric)),
        "isspace" => Value::from(!s.is_empty() && s.chars().all(is_py_space)),
        "islower" => {
            Value::from(s.chars().any(char::is_lowercase) && !s.chars().any(char::is_uppercase))
        }
        "isupper" => {
            Value::from(s.chars().any(char::is_uppercase) && !s.chars().any(char::is_lowercase))
        }
        "removeprefix" => {
            let (p,): (&str,) = from_args(args)?;
            Value::from(s.strip_prefix(p).unwrap_or(s))
        }
        "removesuffix" => {
            let (p,): (&str,) = from_args(args)?;
            Value::from(s.strip_suffix(p).unwrap_or(s))
        }
        _ => return Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
    };
    Ok(v)
}

/// `"{} and {}".format(a, b)` and `"{0}"`: positional placeholders only (`{{`/`}}` escape).
fn format_braces(s: &str, args: &[Value]) -> Result<String, minijinja::Error> {
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = s.chars().peekable();
    let text = |v: &Value| -> String {
        let mut t = String::new();
        display_like_llama_cpp(v, &mut t);
        t
    };
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => field.push(c),
                        None => return Err(invalid_op("format: unmatched '{'")),
                    }
                }
                let index = if field.is_empty() {
                    next += 1;
                    next - 1
                } else {
                    field
                        .parse::<usize>()
                        .map_err(|_| invalid_op("format: only positional fields are supported"))?
                };
                let arg = args
                    .get(index)
                    .ok_or_else(|| invalid_op("format: not enough arguments"))?;
                out.push_str(&text(arg));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn map_method(map: &Value, method: &str, args: &[Value]) -> Result<Value, minijinja::Error> {
    let v = match method {
        "items" => {
            from_args::<()>(args)?;
            let pairs = map
                .try_iter()?
                .map(|k| {
                    let v = map.get_item(&k).unwrap_or_default();
                    Value::from(vec![k, v])
                })
                .collect::<Vec<_>>();
            Value::from(pairs)
        }
        "keys" => {
            from_args::<()>(args)?;
            Value::from(map.try_iter()?.collect::<Vec<_>>())
        }
        "values" => {
            from_args::<()>(args)?;
            Value::from(
                map.try_iter()?
                    .map(|k| map.get_item(&k).unwrap_or_default())
                    .collect::<Vec<_>>(),
            )
        }
        "get" => {
            let (key, default): (Value, Option<Value>) = from_args(args)?;
            match map.get_item(&key) {
                Ok(v) if !v.is_undefined() => v,
                _ => default.unwrap_or(Value::from(())),
            }
        }
        _ => return Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
    };
    Ok(v)
}

fn seq_method(seq: &Value, method: &str, args: &[Value]) -> Result<Value, minijinja::Error> {
    match method {
        "append" | "extend" | "insert" | "pop" | "remove" | "clear" | "sort" | "reverse" => {
            Err(invalid_op(format!(
                "list.{method}() is not supported: lists are immutable in this template engine \
                 (write `{{% set xs = xs + [item] %}}` instead)"
            )))
        }
        "index" => {
            let (needle,): (Value,) = from_args(args)?;
            seq.try_iter()?
                .position(|x| x == needle)
                .map(Value::from)
                .ok_or_else(|| invalid_op("list.index(x): x not in list"))
        }
        "count" => {
            let (needle,): (Value,) = from_args(args)?;
            Ok(Value::from(
                seq.try_iter()?.filter(|x| *x == needle).count(),
            ))
        }
        _ => Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
    }
}
