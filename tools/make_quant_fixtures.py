#!/usr/bin/env python3
"""Builds tests/data/quant/quant_blocks.gguf: for each of ggml's Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K,
Q4_K, Q5_K and Q6_K, a tensor "<type>" of random blocks (random quant bits, sane random fp16 scales) and a tensor
"<type>.dequantized" (F32) holding the values that the `gguf` package's numpy dequantizer (gguf-py, llama.cpp's
own Python reference) gives for them. tests/test_quant_types.cpp checks Dendro's dequantizers and CPU matmul
rows against it.

Each tensor has ROWS rows of 512 elements (2 k-quant super-blocks or 16 legacy blocks a row). The first block
of each type has its scales set to zero, and the last to +-1024 (large values, still far from overflow).

Usage:
  tools/make_quant_fixtures.py              # creates a venv in build/gguf-fixture-venv with pinned packages
  tools/make_quant_fixtures.py --python PY  # uses an interpreter that already has them
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pinned_python import ensure_pinned_interpreter

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_PATH = REPO_ROOT / "tests" / "data" / "quant" / "quant_blocks.gguf"
VENV_DIR = REPO_ROOT / "build" / "gguf-fixture-venv"
PINNED_PACKAGES = ["gguf==0.19.0", "numpy==2.4.6"]
SEED = 20261201
ROWS = 2
ROW_LENGTH = 512

# Byte offsets of each block's fp16 scale fields (ggml's block_q4_0 ... block_q6_K): d, then dmin or m.
SCALE_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "IQ4_NL": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
# Scales whose products with the largest quants and sub-block scales stay well inside fp32 and fp16 ranges.
LARGEST_SCALE = 2.0 ** 10


def ggml_name(name: str) -> str:
    """ggml's type name: "Q4_0" -> "q4_0", "Q4_K" -> "q4_K", "IQ4_NL" -> "iq4_nl"."""
    return name.lower() if name.startswith("IQ") else name[0].lower() + name[1:]


def random_blocks(np, rng, block_bytes: int, n_blocks: int, fields: list[int]):
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    # Magnitudes from 2^-14 (smallest normal fp16) to 2^4, random signs: sane scales, every exponent range.
    scales = (2.0 ** rng.uniform(-14, 4, size=(n_blocks, len(fields)))
              * rng.choice([-1.0, 1.0], size=(n_blocks, len(fields)))).astype(np.float16)
    scales[0, :] = 0.0
    scales[-1, :] = [LARGEST_SCALE, -LARGEST_SCALE][: len(fields)]
    for i, offset in enumerate(fields):
        blocks[:, offset:offset + 2] = scales[:, i:i + 1].view(np.uint8).reshape(n_blocks, 2)
    return blocks


def build(out_path: Path) -> None:
    import gguf
    import numpy as np

    rng = np.random.default_rng(SEED)
    writer = gguf.GGUFWriter(str(out_path), "dendro-quant-fixture")
    for name, fields in SCALE_FIELDS.items():
        qtype = gguf.GGMLQuantizationType[name]
        block_size, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        n_blocks = ROWS * ROW_LENGTH // block_size
        raw = random_blocks(np, rng, block_bytes, n_blocks, fields).reshape(ROWS, -1)
        values = gguf.quants.dequantize(raw, qtype).astype(np.float32)
        assert values.shape == (ROWS, ROW_LENGTH) and np.isfinite(values).all(), name
        tensor_name = ggml_name(name)
        writer.add_tensor(tensor_name, raw, raw_dtype=qtype)
        writer.add_tensor(f"{tensor_name}.dequantized", values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", help="interpreter that has the pinned packages (skips the venv)")
    args = parser.parse_args()
    ensure_pinned_interpreter(Path(__file__), PINNED_PACKAGES, VENV_DIR, args.python)
    OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    build(OUT_PATH)
    print(f"wrote {OUT_PATH} ({OUT_PATH.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
