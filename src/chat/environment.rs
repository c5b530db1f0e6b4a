//! The minijinja environment configured like llama.cpp's Jinja engine.
//!
//! minijinja renders; what is set up here is where llama.cpp's engine differs from Jinja2 and so
//! from minijinja's defaults (and from `minijinja-contrib`'s Python compatibility layer):
//! lexer flags, how values print (`True`/`False`, `none` prints nothing, floats as C++
//! `std::to_string` trimmed), ASCII-only case mapping filters, `raise_exception` and
//! `strftime_now`, and `default`, which replaces `none` too.

use std::fmt::Write as _;

use minijinja::value::ValueKind;
use minijinja::{Environment, State, UndefinedBehavior, Value};

use super::dates::{ChatDate, EPOCH};
use super::error::{invalid_op, RaisedException};
use super::pycompat;
use super::template::NOW_VAR;
use super::tojson::tojson;

/// Instruction budget for one render.
const RENDER_FUEL: u64 = 5_000_000;

pub(super) fn build_environment() -> Environment<'static> {
    let mut env = Environment::new();
    // llama.cpp's Jinja lexer: lstrip_blocks and trim_blocks on, one trailing newline dropped.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    // Bound the work a hostile template can do (a real template renders in well under 1% of it).
    env.set_fuel(Some(RENDER_FUEL));
    // llama.cpp: attributes of undefined values are undefined, iterating one gives nothing.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_formatter(|out, _state, value| {
        let mut s = String::new();
        display_like_llama_cpp(value, &mut s);
        out.write_str(&s).map_err(minijinja::Error::from)
    });
    env.set_unknown_method_callback(pycompat::call_method);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env.add_filter("default", default_filter);
    env.add_filter("d", default_filter);
    env.add_function("tojson", tojson);
    // llama.cpp's versions of these filters (ASCII case mapping, C whitespace)
    env.add_filter("upper", |s: &str| s.to_ascii_uppercase());
    env.add_filter("lower", |s: &str| s.to_ascii_lowercase());
    env.add_filter("title", |s: &str| pycompat::title(s));
    env.add_filter("capitalize", |s: &str| pycompat::capitalize(s));
    env.add_filter("trim", |s: &str, chars: Option<&str>| {
        pycompat::strip(s, chars, true, true).to_string()
    });
    env
}

/// llama.cpp's `default(value, default_value, boolean=false)`: unlike Jinja2's, it replaces
/// `none` as well as undefined (`msg.get('name') | default('unknown')` gives 'unknown' for a
/// message without a name, which Gemma 4's template relies on); with `boolean` true, any falsy
/// value. (llama.cpp: common/jinja/runtime builtins, `default_value`.)
fn default_filter(value: &Value, default: Option<Value>, boolean: Option<bool>) -> Value {
    let missing = if boolean.unwrap_or(false) {
        !value.is_true()
    } else {
        value.is_undefined() || value.is_none()
    };
    if missing {
        default.unwrap_or_else(|| Value::from(""))
    } else {
        value.clone()
    }
}

fn raise_exception(args: &[Value]) -> Result<Value, minijinja::Error> {
    let msg = args
        .first()
        .map(|v| match v.as_str() {
            Some(s) => s.to_string(),
            None => v.to_string(),
        })
        .unwrap_or_default();
    Err(invalid_op(format!("raise_exception: {msg}")).with_source(RaisedException(msg)))
}

fn strftime_now(state: &State, format: &str) -> String {
    let now = state
        .lookup(NOW_VAR)
        .and_then(|v| ChatDate::from_value(&v))
        .or_else(ChatDate::now_utc)
        .unwrap_or(EPOCH);
    now.strftime(format)
}

/// How llama.cpp prints a value in `{{ ... }}`: strings as they are, numbers, `True`/`False`,
/// lists item by item; `none`, undefined, maps and functions print nothing.
pub(super) fn display_like_llama_cpp(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None | ValueKind::Map | ValueKind::Invalid => {}
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        ValueKind::Number => {
            if value.is_integer() {
                let _ = write!(out, "{value}");
            } else {
                match f64::try_from(value.clone()) {
                    Ok(f) => out.push_str(&float_to_string_like_cpp(f)),
                    Err(_) => {
                        let _ = write!(out, "{value}");
                    }
                }
            }
        }
        ValueKind::Seq | ValueKind::Iterable => {
            if let Ok(items) = value.try_iter() {
                for item in items {
                    display_like_llama_cpp(&item, out);
                }
            }
        }
        _ => {
            if value.as_object().is_none() {
                let _ = write!(out, "{value}");
            }
        }
    }
}

/// C++ `std::to_string(double)` (`%f`) with trailing zeros removed, one kept after the point.
pub(super) fn float_to_string_like_cpp(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "nan".into()
        } else if f > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let mut s = format!("{f:.6}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.push('0');
    }
    s
}
