#!/usr/bin/env python3
"""Independent JSON-schema validator for the structured-output tests (tests/structured.rs,
tests/e2e/structured.test.mjs): the `jsonschema` PyPI package, never our own code.

Input on stdin: one JSON object per line, {"schema": ..., "text": "..."}. Output: one line per
input, "ok" or "error: <why>" (the text does not parse, or it does not validate).
Needs `python3 -m pip install jsonschema` (scripts/setup installs it).
"""
import json
import sys

try:
    import jsonschema
except ImportError:
    sys.stderr.write("the `jsonschema` Python package is missing: python3 -m pip install jsonschema\n")
    sys.exit(3)

for line in sys.stdin:
    if not line.strip():
        continue
    case = json.loads(line)
    try:
        instance = json.loads(case["text"])
    except json.JSONDecodeError as e:
        print(f"error: does not parse: {e}")
        continue
    try:
        jsonschema.validate(instance, case["schema"], format_checker=jsonschema.FormatChecker())
        print("ok")
    except jsonschema.ValidationError as e:
        print("error: " + " ".join(str(e.message).split()))
sys.stdout.flush()
