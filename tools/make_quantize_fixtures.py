#!/usr/bin/env python3
"""Builds tests/data/quantize/quantize_reference.gguf: a tensor "rows" (F32, ROWS rows of 512 values: random
rows of several distributions and adversarial ones: all zeros, one huge outlier, constant, negative-only,
tiny values, a single non-zero) and, for each type, a tensor "<type>" holding a reference quantizer's output
for those rows:

- Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: the `gguf` package's numpy quantizers (gguf-py, llama.cpp's own Python
  reference), which tests/test_quantize.cpp expects Dendro to reproduce byte for byte;
- Q4_K, Q5_K, Q6_K (gguf-py has no quantizers for them): ggml's own reference quantizer (ggml_quantize_chunk
  without an importance matrix, what llama.cpp's llama-quantize uses), called from the libggml-base shared
  library of llama-cpp-python 0.3.36 (--ggml-lib); the test bounds Dendro's error against it.

The reference code is only run here, never at test time or in the repository.

Usage:
  tools/make_quantize_fixtures.py --ggml-lib /path/to/llama_cpp/lib/libggml-base.so
  tools/make_quantize_fixtures.py --python PY --ggml-lib ...   # an interpreter that has the pinned packages
"""
from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

from make_quant_fixtures import ggml_name
from pinned_python import ensure_pinned_interpreter

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_PATH = REPO_ROOT / "tests" / "data" / "quantize" / "quantize_reference.gguf"
VENV_DIR = REPO_ROOT / "build" / "gguf-fixture-venv"
PINNED_PACKAGES = ["gguf==0.19.0", "numpy==2.4.6"]
SEED = 20261202
ROW_LENGTH = 512  # 2 k-quant super-blocks, 16 legacy blocks
RANDOM_ROWS_PER_KIND = 4
GGUF_PY_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
GGML_TYPES = ["Q4_K", "Q5_K", "Q6_K"]


def make_rows(np):
    rng = np.random.default_rng(SEED)
    n = ROW_LENGTH
    rows = []
    for _ in range(RANDOM_ROWS_PER_KIND):
        rows.append(rng.normal(0.0, 1.0, n))                  # weights-like
        rows.append(rng.uniform(-1.0, 1.0, n) * 0.02)         # small uniform, as trained matrices
        rows.append(rng.standard_t(3, n))                     # heavy tails
        rows.append(rng.normal(0.5, 0.2, n))                  # offset from zero (mins matter)
    rows.append(np.zeros(n))                                  # all zeros
    outlier = rng.normal(0.0, 0.01, n)
    outlier[37] = 1000.0
    rows.append(outlier)                                      # one huge outlier
    rows.append(np.full(n, 0.75))                             # constant
    rows.append(-np.abs(rng.normal(0.0, 1.0, n)))             # negative only
    rows.append(rng.normal(0.0, 1e-6, n))                     # tiny (fp16 subnormal scales)
    single = np.zeros(n)
    single[300] = -3.0
    rows.append(single)                                       # a single non-zero value
    return np.stack(rows).astype(np.float32)


def ggml_quantize(np, lib, type_id: int, rows, type_size: int, block_size: int):
    n_rows, n_per_row = rows.shape
    out = np.zeros(n_rows * (n_per_row // block_size) * type_size, dtype=np.uint8)
    src = np.ascontiguousarray(rows, dtype=np.float32)
    lib.ggml_quantize_init(type_id)
    written = lib.ggml_quantize_chunk(type_id, src.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
                                      0, n_rows, n_per_row, None)
    assert written == out.size, (type_id, written, out.size)
    return out.reshape(n_rows, -1)


def build(out_path: Path, ggml_lib: str) -> None:
    import gguf
    import numpy as np

    lib = ctypes.CDLL(ggml_lib)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]

    rows = make_rows(np)
    writer = gguf.GGUFWriter(str(out_path), "dendro-quantize-fixture")
    writer.add_tensor("rows", rows)
    for name in GGUF_PY_TYPES + GGML_TYPES:
        qtype = gguf.GGMLQuantizationType[name]
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        if name in GGUF_PY_TYPES:
            raw = gguf.quants.quantize(rows, qtype)
        else:
            raw = ggml_quantize(np, lib, int(qtype), rows, type_size, block_size)
        assert raw.shape == (rows.shape[0], ROW_LENGTH // block_size * type_size), name
        values = gguf.quants.dequantize(raw, qtype)
        assert np.isfinite(values).all(), name
        writer.add_tensor(ggml_name(name), raw, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", help="interpreter that has the pinned packages (skips the venv)")
    parser.add_argument("--ggml-lib", required=True, help="libggml-base.so of llama-cpp-python 0.3.36")
    args = parser.parse_args()
    ensure_pinned_interpreter(Path(__file__), PINNED_PACKAGES, VENV_DIR, args.python)
    OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    build(OUT_PATH, args.ggml_lib)
    print(f"wrote {OUT_PATH} ({OUT_PATH.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
