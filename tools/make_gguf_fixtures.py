#!/usr/bin/env python3
"""Builds tests/data/gguf/gguf_py_written.gguf: a small GGUF file written by llama.cpp's own Python writer
(the `gguf` package), so that Dendro's reader is tested against an independent writer, and Dendro's fp16,
bf16 and Q8_0 conversions against gguf-py's reference quantizers.

The file holds a key of every value type, arrays, a non-default alignment (64), and for each of F16, BF16 and
Q8_0 a source tensor "<type>.source" (F32) next to "<type>" (the source converted by gguf-py). The test
(tests/test_gguf_interop.cpp) converts each source with Dendro and compares the bytes.

Usage:
  tools/make_gguf_fixtures.py              # creates a venv in build/gguf-fixture-venv with pinned packages
  tools/make_gguf_fixtures.py --python PY  # uses an interpreter that already has them
(gguf-py skips empty strings and arrays, so those are covered by the writer round-trip tests instead.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pinned_python import ensure_pinned_interpreter

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_PATH = REPO_ROOT / "tests" / "data" / "gguf" / "gguf_py_written.gguf"
VENV_DIR = REPO_ROOT / "build" / "gguf-fixture-venv"
PINNED_PACKAGES = ["gguf==0.19.0", "numpy==2.4.6"]
ALIGNMENT = 64
SEED = 20261122


def conversion_sources(np):
    """fp32 rows that exercise rounding: random values plus ties, subnormals, overflow and signed zeros."""
    rng = np.random.default_rng(SEED)
    random_values = (rng.standard_normal(96) * 3).astype(np.float32)
    f16_specials = np.array(
        [0.0, -0.0, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 2.0**-24, 2.0**-25, 3 * 2.0**-25, 65504.0, 65520.0,
         -1e6, np.inf, -np.inf, 2.0**-14, 1023.5 * 2.0**-24, 0.1, -0.3, 1e-8, 5.960464477539063e-08, 7.0, 65519.0,
         6.1e-5, -2.0**-20, 33.3, 4096.5, 1.0e-3, 1.0e-4, 1.0e-5, 1.0e-6, 1.0e-7, -65536.0, 3.0e38, 123.456],
        dtype=np.float32)
    bf16_bits = np.array(
        [0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x7F7FFFFF, 0x00008000, 0x00018000, 0x00010000,
         0x80000000, 0xFF800000, 0x7F800000, 0x3DCCCCCD, 0xC0490FDB, 0x00000001, 0x807FFFFF, 0x4B7FFFFF] * 2,
        dtype=np.uint32)
    q8_blocks = (rng.standard_normal(32 * 6) * rng.uniform(0.01, 50, 32 * 6)).astype(np.float32)
    q8_blocks[32:64] = 0.0                                         # an all-zero block: d = 0
    q8_blocks[64:96] = np.arange(32, dtype=np.float32) - 15.5      # halves: roundf goes away from zero
    q8_blocks[96] = 127.0
    return {
        "f16": np.concatenate([f16_specials, random_values]).reshape(4, 32),
        "bf16": np.concatenate([bf16_bits.view(np.float32), random_values]).reshape(4, 32),
        "q8_0": q8_blocks.reshape(3, 64),
    }


def build(out_path: Path) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(out_path), "mamba")
    writer.add_custom_alignment(ALIGNMENT)
    writer.add_name("gguf-py interop fixture")
    writer.add_uint8("t.u8", 255)
    writer.add_int8("t.i8", -128)
    writer.add_uint16("t.u16", 65535)
    writer.add_int16("t.i16", -32768)
    writer.add_uint32("t.u32", 4294967295)
    writer.add_int32("t.i32", -2147483648)
    writer.add_uint64("t.u64", 18446744073709551615)
    writer.add_int64("t.i64", -9223372036854775808)
    writer.add_float32("t.f32", 0.1)
    writer.add_float64("t.f64", 0.1)
    writer.add_bool("t.bool", True)
    writer.add_string("t.string", "h\u00e9llo")
    writer.add_array("t.i32_array", [1, -2, 3])
    writer.add_array("t.f32_array", [1.5, -2.25])
    writer.add_array("t.string_array", ["a", "", "\u2581the"])
    writer.add_array("t.bool_array", [True, False])

    gguf_types = {"f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16,
                  "q8_0": gguf.GGMLQuantizationType.Q8_0}
    for name, source in conversion_sources(np).items():
        writer.add_tensor(f"{name}.source", source)
        converted = gguf.quants.quantize(source, gguf_types[name])
        writer.add_tensor(name, converted, raw_dtype=gguf_types[name])

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
