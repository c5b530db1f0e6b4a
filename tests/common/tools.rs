//! Structured-output helpers shared by tests/structured.rs and tests/serve.rs: the independent
//! JSON-schema validator and a pair of tools.

use serde_json::{json, Value as Json};
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs the independent validator over (schema, text) pairs: `Ok` or why not, per pair.
pub fn validate(cases: &[(Json, String)]) -> Vec<Result<(), String>> {
    let script = super::root().join("tests/tools/validate_json.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to validate outputs (with `python3 -m pip install jsonschema`)");
    {
        let stdin = child.stdin.as_mut().unwrap();
        for (schema, text) in cases {
            writeln!(stdin, "{}", json!({"schema": schema, "text": text})).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the validator failed: {}\n(install it with `python3 -m pip install jsonschema`)",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), cases.len(), "one verdict per case");
    lines
        .into_iter()
        .map(|l| if l == "ok" { Ok(()) } else { Err(l) })
        .collect()
}

/// Two tools: a weather lookup (an enum and length bounds) and a time-zone clock (a pattern).
pub fn weather_tools() -> Json {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "minLength": 1, "maxLength": 32},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["city", "unit"],
                "additionalProperties": false
            }
        }
    }, {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a time zone",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string", "pattern": "^[A-Za-z]+/[A-Za-z_]+$"}},
                "required": ["zone"]
            }
        }
    }])
}
