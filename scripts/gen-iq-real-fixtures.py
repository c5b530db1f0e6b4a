#!/usr/bin/env python3
# Writes tests/fixtures/quant/llama.json and llama/*.bin (checked by tests/quant.rs): real weights
# quantized to every IQ format and MXFP4 by llama.cpp's own quantizer, with the `gguf` package's
# dequantization as the expected values.
#
# Made with (from the repository root; python3 with numpy and gguf==0.19.0; models in models/;
# the npm package @node-llama-cpp/linux-x64@3.22.1, which scripts/fetch-models installs):
#
#     LLAMA_LIBDIR=~/.cache/wasm-chord/node-llama-cpp-3.22.1/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64 \
#         python3 scripts/gen-iq-real-fixtures.py models tests/fixtures/quant
#
# Source: the first 16 rows (16 × 1536 weights) of `blk.0.ffn_down.weight` of
# smollm2-135m-instruct-q4_1.gguf, dequantized exactly by the gguf package. Quantizer: ggml's
# `ggml_quantize_chunk` (libggml-base.so of the npm package), one call per type. Importance
# matrix (IQ2_XXS, IQ2_XS and IQ1_S refuse to quantize without one; every type gets the same):
# a deterministic stand-in for activation statistics, the mean square of each column of the 16
# rows plus 1e-3 (llama.cpp's imatrix holds per-column mean squares of the activations).
# Every tensor is also dequantized by ggml's own `dequantize_row_*` and must equal the gguf
# package bit for bit. Deterministic: rerunning must leave `git status` clean.
import ctypes as C
import json
import os
import sys
from importlib.metadata import version

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

assert version("gguf") == "0.19.0", f"need gguf==0.19.0, have {version('gguf')}"

TYPES = [T.IQ4_NL, T.IQ4_XS, T.IQ3_XXS, T.IQ3_S, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ1_S, T.IQ1_M,
         T.MXFP4]
MODEL, TENSOR, ROWS = "smollm2-135m-instruct-q4_1.gguf", "blk.0.ffn_down.weight", 16
FIRST_VALUES = 1024


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: gen-iq-real-fixtures.py MODELS_DIR OUT_DIR")
    models_dir, out_dir = sys.argv[1], sys.argv[2]
    libdir = os.environ["LLAMA_LIBDIR"]
    ggml = C.CDLL(os.path.join(libdir, "libggml-base.so"), mode=C.RTLD_GLOBAL)
    ggml.ggml_quantize_chunk.restype = C.c_size_t
    ggml.ggml_quantize_chunk.argtypes = [C.c_int, C.c_void_p, C.c_void_p, C.c_int64, C.c_int64,
                                         C.c_int64, C.c_void_p]
    ggml.ggml_quantize_requires_imatrix.restype = C.c_bool

    reader = gguf.GGUFReader(os.path.join(models_dir, MODEL))
    t = next(t for t in reader.tensors if t.name == TENSOR)
    cols = int(t.shape[0])
    raw = np.asarray(t.data).view(np.uint8).reshape(-1)
    w = np.asarray(gguf.quants.dequantize(raw, t.tensor_type), dtype=np.float32).reshape(-1, cols)
    src = np.ascontiguousarray(w[:ROWS])
    imatrix = np.ascontiguousarray((src.astype(np.float64) ** 2).mean(axis=0) + 1e-3, dtype=np.float32)

    os.makedirs(os.path.join(out_dir, "llama"), exist_ok=True)
    entries = []
    for ty in TYPES:
        block, size = gguf.GGML_QUANT_SIZES[ty]
        n_bytes = ROWS * cols // block * size
        dst = np.zeros(n_bytes, dtype=np.uint8)
        got = ggml.ggml_quantize_chunk(int(ty), src.ctypes.data, dst.ctypes.data, 0, ROWS, cols,
                                       imatrix.ctypes.data)
        assert got == n_bytes, (ty.name, got, n_bytes)
        values = np.asarray(gguf.quants.dequantize(dst, ty), dtype=np.float32).reshape(-1)
        ref = np.zeros(values.size, dtype=np.float32)
        fn = getattr(ggml, f"dequantize_row_{ty.name.lower()}")
        fn.argtypes = [C.c_void_p, C.c_void_p, C.c_int64]
        fn(dst.ctypes.data, ref.ctypes.data, values.size)
        assert ref.tobytes() == values.tobytes(), f"{ty.name}: gguf and ggml dequantize differently"
        name = ty.name.lower()
        dst.tofile(os.path.join(out_dir, "llama", f"{name}.bin"))
        le = values.astype("<f4")
        le[:FIRST_VALUES].tofile(os.path.join(out_dir, "llama", f"{name}.first.f32"))
        v64 = values.astype(np.float64)
        err = float(((v64 - src.reshape(-1)) ** 2).sum() / (src.astype(np.float64) ** 2).sum())
        entries.append({
            "type": ty.name,
            "imatrix_required": bool(ggml.ggml_quantize_requires_imatrix(int(ty))),
            "input": f"llama/{name}.bin",
            "bytes": n_bytes,
            "elements": int(values.size),
            "fnv1a64": fnv1a64(le.tobytes()),
            "sum": float(v64.sum()),
            "sum_sq": float((v64 * v64).sum()),
            "nmse_vs_source": err,
            "first": f"llama/{name}.first.f32",
        })
        print(f"{ty.name}: {n_bytes} bytes, NMSE vs source {err:.3g}", file=sys.stderr)
    with open(os.path.join(out_dir, "llama.json"), "w") as fh:
        json.dump({"generator": "scripts/gen-iq-real-fixtures.py", "gguf": "0.19.0",
                   "quantizer": "ggml_quantize_chunk, @node-llama-cpp/linux-x64@3.22.1",
                   "source": {"model": MODEL, "tensor": TENSOR, "rows": ROWS, "cols": cols},
                   "tensors": entries}, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
