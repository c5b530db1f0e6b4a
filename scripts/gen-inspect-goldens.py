#!/usr/bin/env python3
"""Expected `chord inspect --json` facts for each test model, from the independent `gguf` PyPI package.

    python3 -m pip install gguf==0.19.0 numpy
    python3 scripts/gen-inspect-goldens.py models tests/goldens/inspect

Writes one JSON per model: GGUF version, alignment, architecture, metadata keys, and every tensor's
name, type, shape (GGUF order, ne[0] first), absolute data offset and byte size.
"""
import json, os, sys
import gguf

MODELS = [
    "smollm2-135m-instruct-q4_k_m.gguf",
    "smollm2-135m-instruct-pad768-q4_k_m.gguf",
    "tiny-random-llama-q4_k_m.gguf",
    "smollm2-135m-instruct-q4_1.gguf",
    "gemma-3-270m-q4_k_m.gguf",
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
]

src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
for m in MODELS:
    r = gguf.GGUFReader(os.path.join(src, m))
    f = r.fields
    keys = [k for k in f if not k.startswith("GGUF.")]
    out = {
        "generated_by": f"gguf {gguf.__version__ if hasattr(gguf, '__version__') else '0.19.0'} via scripts/gen-inspect-goldens.py",
        "version": int(f["GGUF.version"].contents()),
        "alignment": int(f["general.alignment"].contents()) if "general.alignment" in f else 32,
        "architecture": f["general.architecture"].contents(),
        "metadata_keys": keys,
        "tensor_count": len(r.tensors),
        "tensors": [
            {
                "name": t.name,
                "type": t.tensor_type.name,
                "shape": [int(x) for x in t.shape],
                "offset": int(t.data_offset),
                "bytes": int(t.n_bytes),
            }
            for t in r.tensors
        ],
    }
    with open(os.path.join(dst, m.replace(".gguf", ".json")), "w") as o:
        json.dump(out, o, separators=(",", ":"))
        o.write("\n")
    print("wrote", m, len(r.tensors), "tensors")
