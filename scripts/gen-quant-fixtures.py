#!/usr/bin/env python3
# Writes the dequantization fixtures in tests/fixtures/quant/ (checked by tests/quant.rs).
#
# Made with (from the repository root, python3 with numpy and gguf==0.19.0, the eight models of
# scripts/fetch-models in models/):
#
#     python3 scripts/gen-quant-fixtures.py models tests/fixtures/quant
#
# The oracle is `gguf.quants.dequantize` from the gguf PyPI package 0.19.0, which matches
# ggml's reference dequantizers bit for bit. The output is deterministic (fixed seed), so
# rerunning the command must leave `git status` clean.
#
# Writes:
#   synthetic.json, synthetic/<type>.bin + .f32
#       For each of the 23 supported types: random blocks from a fixed seed (f16 scale fields
#       replaced by finite values spanning subnormal to large, both signs; MXFP4's E8M0 scale
#       kept where 12·scale is finite) and their expected
#       f32 values. For F16 and BF16 also the FNV-1a hash of all 65536 bit patterns.
#   real.json, real/<model>.<type>.first.f32
#       For every (model, tensor type in it): one tensor (the smallest 2-D one, else the
#       smallest), its absolute data offset, byte and element counts, FNV-1a-64 of the
#       dequantized little-endian f32 bytes, sum and sum of squares (f64), and its first
#       up to 1024 values.

import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

from importlib.metadata import version

assert version("gguf") == "0.19.0", f"need gguf==0.19.0, have {version('gguf')}"

MODELS = [
    "smollm2-135m-instruct-q4_k_m.gguf",
    "smollm2-135m-instruct-pad768-q4_k_m.gguf",
    "tiny-random-llama-q4_k_m.gguf",
    "smollm2-135m-instruct-q4_1.gguf",
    "gemma-3-270m-q4_k_m.gguf",
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "smollm2-135m-instruct-iq4_xs.gguf",
    "smollm2-135m-instruct-pad768-q5_k_m.gguf",
]

SEED = 0x5EED_C40D
FIRST_VALUES = 1024

# Byte offsets of the f16 fields inside one block (ggml-common.h).
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.IQ4_NL: [0],
    T.IQ4_XS: [0],
    T.IQ3_XXS: [0],
    T.IQ3_S: [0],
    T.IQ2_XXS: [0],
    T.IQ2_XS: [0],
    T.IQ2_S: [0],
    T.IQ1_S: [0],
    T.IQ1_M: [],  # its f16 scale is spread over 4 nibbles: see synthetic()
    T.MXFP4: [],  # an E8M0 byte: see synthetic()
}
MATRIX_TYPES = set(F16_FIELDS)
IQ_TYPES = [T.IQ4_NL, T.IQ4_XS, T.IQ3_XXS, T.IQ3_S, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ1_S,
            T.IQ1_M, T.MXFP4]


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def dequant(raw: np.ndarray, ty: T) -> np.ndarray:
    out = gguf.quants.dequantize(np.ascontiguousarray(raw, dtype=np.uint8), ty)
    out = np.asarray(out, dtype=np.float32).reshape(-1)
    assert out.dtype == np.float32
    return out


def sane_f16(rng: np.random.Generator, n: int) -> np.ndarray:
    """Finite f16 scales: magnitudes 1e-7 (subnormal) .. 1e3, both signs, a few exact zeros."""
    mag = 10.0 ** rng.uniform(-7, 3, n)
    sign = np.where(rng.random(n) < 0.3, -1.0, 1.0)
    v = (mag * sign).astype(np.float16)
    v[rng.random(n) < 0.05] = 0
    assert np.isfinite(v).all()
    return v


def random_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Finite f32 values of every kind: normal over the whole range, subnormal, ±0."""
    bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    exp = (bits >> 23) & 0xFF
    bits = np.where(exp == 0xFF, bits ^ (1 << 30), bits)  # inf/nan → finite
    v = bits.view(np.float32).copy()
    special = np.array(
        [0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, -3.4028235e38,
         65504.0, 6e-8, -6e-8, 1e-40, 0.5, 3.0e-39, -2.5],
        dtype=np.float32,
    )
    v[: len(special)] = special
    assert np.isfinite(v).all()
    return v


def random_half_bits(rng: np.random.Generator, n: int, exp_mask: int, specials) -> np.ndarray:
    """Random 16-bit patterns with the all-ones exponent avoided (no inf/nan)."""
    bits = rng.integers(0, 2**16, n, dtype=np.uint32).astype(np.uint16)
    bits = np.where((bits & exp_mask) == exp_mask, bits & ~np.uint16(0x4000), bits).astype(np.uint16)
    bits[: len(specials)] = specials
    return bits


def synthetic(out_dir: str) -> None:
    rng = np.random.default_rng(SEED)
    os.makedirs(os.path.join(out_dir, "synthetic"), exist_ok=True)
    entries = []

    def write(ty: T, raw: np.ndarray, expected: np.ndarray) -> None:
        name = ty.name.lower()
        raw.astype(np.uint8).tofile(os.path.join(out_dir, "synthetic", f"{name}.bin"))
        le = expected.astype("<f4")
        le.tofile(os.path.join(out_dir, "synthetic", f"{name}.f32"))
        entries.append({
            "type": ty.name,
            "elements": int(expected.size),
            "bytes": int(raw.size),
            "input": f"synthetic/{name}.bin",
            "expected": f"synthetic/{name}.f32",
            "fnv1a64": fnv1a64(le.tobytes()),
        })

    # Plain float types: 256 values each.
    f = random_floats(rng, 256)
    write(T.F32, f.view(np.uint8), dequant(f.view(np.uint8), T.F32))
    # f16 specials: ±0, smallest/largest subnormal, smallest normal, max, 1, -2.
    h = random_half_bits(rng, 256, 0x7C00, [0x0000, 0x8000, 0x0001, 0x83FF, 0x0400, 0x7BFF, 0x3C00, 0xC000])
    write(T.F16, h.view(np.uint8), dequant(h.view(np.uint8), T.F16))
    b = random_half_bits(rng, 256, 0x7F80, [0x0000, 0x8000, 0x0001, 0x807F, 0x0080, 0x7F7F, 0x3F80, 0xC000])
    write(T.BF16, b.view(np.uint8), dequant(b.view(np.uint8), T.BF16))

    # Block types: 32 blocks of the 32-weight formats, 8 super-blocks of the K-quants.
    for ty in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        block, size = gguf.GGML_QUANT_SIZES[ty]
        n_blocks = 32 if block == 32 else 8
        raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint16).astype(np.uint8)
        for off in F16_FIELDS[ty]:
            raw[:, off:off + 2] = sane_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
        raw = raw.reshape(-1)
        expected = dequant(raw, ty)
        assert expected.size == n_blocks * block and np.isfinite(expected).all(), ty.name
        write(ty, raw, expected)

    # The IQ formats and MXFP4 (after the others, so their random streams are unchanged).
    for ty in IQ_TYPES:
        block, size = gguf.GGML_QUANT_SIZES[ty]
        n_blocks = 32 if block == 32 else 8
        raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint16).astype(np.uint8)
        for off in F16_FIELDS[ty]:
            raw[:, off:off + 2] = sane_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
        if ty == T.IQ1_M:
            # The f16 scale's 4 nibbles are the top nibbles of the 4 scale words (bytes 48..56).
            d = sane_f16(rng, n_blocks).view(np.uint16)
            for k in range(4):
                nib = ((d >> (4 * k)) & 0xF).astype(np.uint8)
                raw[:, 49 + 2 * k] = (raw[:, 49 + 2 * k] & 0x0F) | (nib << 4)
        if ty == T.MXFP4:
            # E8M0 exponents up to 252 (scale 2^124; 12·2^124 is finite), subnormal scales (0, 1) included.
            raw[:, 0] = rng.integers(0, 253, n_blocks)
            raw[:6, 0] = [0, 1, 2, 127, 128, 252]
        raw = raw.reshape(-1)
        expected = dequant(raw, ty)
        assert expected.size == n_blocks * block and np.isfinite(expected).all(), ty.name
        write(ty, raw, expected)

    # Every 16-bit pattern, NaN and inf included, through the F16 and BF16 paths.
    every = np.arange(65536, dtype=np.uint16).view(np.uint8)
    exhaustive = [
        {"type": t.name, "fnv1a64": fnv1a64(dequant(every, t).astype("<f4").tobytes())}
        for t in (T.F16, T.BF16)
    ]

    with open(os.path.join(out_dir, "synthetic.json"), "w") as fh:
        json.dump({"generator": "scripts/gen-quant-fixtures.py", "gguf": "0.19.0", "seed": SEED,
                   "blocks": entries, "all_bit_patterns": exhaustive}, fh, indent=1)
        fh.write("\n")


def real(models_dir: str, out_dir: str) -> None:
    os.makedirs(os.path.join(out_dir, "real"), exist_ok=True)
    entries = []
    for model in MODELS:
        path = os.path.join(models_dir, model)
        reader = gguf.GGUFReader(path)
        by_type = {}
        for i, t in enumerate(reader.tensors):
            by_type.setdefault(t.tensor_type, []).append((i, t))
        for ty in sorted(by_type, key=lambda t: t.value):
            cands = by_type[ty]
            if ty in MATRIX_TYPES and any(len(t.shape) >= 2 for _, t in cands):
                cands = [(i, t) for i, t in cands if len(t.shape) >= 2]
            _, t = min(cands, key=lambda it: (int(it[1].n_elements), it[0]))
            raw = np.asarray(t.data).view(np.uint8).reshape(-1)
            n = int(t.n_elements)
            assert raw.size == int(t.n_bytes)
            # data_offset is absolute: check against the file itself.
            with open(path, "rb") as fh:
                fh.seek(int(t.data_offset))
                assert fh.read(64) == raw[:64].tobytes()
            values = dequant(raw, ty)
            assert values.size == n
            le = values.astype("<f4")
            stem = model.removesuffix(".gguf")
            first = f"real/{stem}.{ty.name.lower()}.first.f32"
            le[:FIRST_VALUES].tofile(os.path.join(out_dir, first))
            v64 = values.astype(np.float64)
            entries.append({
                "model": model,
                "tensor": t.name,
                "type": ty.name,
                "shape": [int(x) for x in t.shape],
                "offset": int(t.data_offset),
                "bytes": int(raw.size),
                "elements": n,
                "fnv1a64": fnv1a64(le.tobytes()),
                "sum": float(v64.sum()),
                "sum_sq": float((v64 * v64).sum()),
                "first": first,
            })
            print(f"{model} {ty.name} {t.name} {[int(x) for x in t.shape]}", file=sys.stderr)
    with open(os.path.join(out_dir, "real.json"), "w") as fh:
        json.dump({"generator": "scripts/gen-quant-fixtures.py", "gguf": "0.19.0",
                   "tensors": entries}, fh, indent=1)
        fh.write("\n")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: gen-quant-fixtures.py MODELS_DIR OUT_DIR")
    models_dir, out_dir = sys.argv[1], sys.argv[2]
    synthetic(out_dir)
    real(models_dir, out_dir)


if __name__ == "__main__":
    main()
