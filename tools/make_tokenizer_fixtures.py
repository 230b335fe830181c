#!/usr/bin/env python3
"""Builds the tokenizer parity fixtures under tests/data/tokenizer_fixtures/.

The reference tokenizers are HF `tokenizers` (GPT-NeoX-20B tokenizer.json) and the `sentencepiece` Python
package (Mistral v3 tokenizer.model.v3). "gpt-neox-20b-no-nfc" is that tokenizer.json without its NFC
normalizer: a plain GPT-2 byte-level split over the same vocabulary, the reference for tokenizer.ggml.pre
"gpt-2". "gpt-neox-20b-cl100k-split" swaps its normalizer and pre-tokenizer for the cl100k-style split that
DBRX-style tokenizers (tokenizer.ggml.pre "dbrx") declare, a Split on CL100K_PATTERN followed by a ByteLevel
without its own regex, over the same vocabulary: the reference for Dendro's "dbrx" split. For every input in INPUTS it records the ids each reference gives,
without BOS/EOS, as raw little-endian uint16 (both vocabularies have fewer than 65,536 tokens), and the text
the reference decodes them back to (for the samples), in <tokenizer>/<input>.ids and
<tokenizer>/<input>.decoded.txt.
manifest.json lists the fixtures and the package versions they were made with.

Text the references cannot take:
  * SentencePiece has no notion of special tokens written in the text. Dendro (like llama.cpp) cuts out the
    CONTROL, USER_DEFINED and UNKNOWN pieces first, longest match leftmost, and encodes each text piece
    between them separately; the reference ids for Mistral are built the same way, each piece by
    sentencepiece itself.
  * HF decode is asked to skip special tokens: Dendro decodes control tokens to nothing.

Usage (from anywhere):
  tools/make_tokenizer_fixtures.py               # creates a venv in build/tokenizer-fixture-venv, pinned packages
  tools/make_tokenizer_fixtures.py --python PY   # uses an interpreter that already has the packages
"""
from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

from pinned_python import ensure_pinned_interpreter

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "tests" / "data"
OUT_DIR = DATA_DIR / "tokenizer_fixtures"
NEOX_JSON = DATA_DIR / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"
MISTRAL_MODEL = DATA_DIR / "tokenizers" / "mistral-v3" / "tokenizer.model.v3"

PINNED_PACKAGES = ["tokenizers==0.23.3", "sentencepiece==0.2.3"]

# The SentencePiece fixture covers the head of tinyshakespeare only: sentencepiece is the same library
# Dendro links, so the whole corpus would add size, not coverage.
MISTRAL_SHAKESPEARE_BYTES = 200_000

BOTH = ["gpt-neox-20b", "mistral-v3"]
NO_NFC = "gpt-neox-20b-no-nfc"
CL100K = "gpt-neox-20b-cl100k-split"
CL100K_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# name -> (file under tests/data, bytes to take or None for all, tokenizers to run, whether to record the
# decoded text: not for the corpus, whose round trip the tests check against the corpus itself)
INPUTS = {
    "tinyshakespeare": ("text/tinyshakespeare.txt", None, ["gpt-neox-20b"], False),
    "tinyshakespeare_head": ("text/tinyshakespeare.txt", MISTRAL_SHAKESPEARE_BYTES, ["mistral-v3"], False),
    "hard_sample": ("tokenizer_fixtures/hard_sample.txt", None, BOTH + [NO_NFC, CL100K], True),
    "normalization_sample": ("tokenizer_fixtures/normalization_sample.txt", None, BOTH + [NO_NFC, CL100K], True),
    "special_sample": ("tokenizer_fixtures/special_sample.txt", None, BOTH, True),
    "split_sample": ("tokenizer_fixtures/split_sample.txt", None, [CL100K], True),
}

UINT16_LIMIT = 1 << 16


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", help="interpreter that has the pinned packages (skips the venv)")
    parser.add_argument("--venv", default=str(REPO_ROOT / "build" / "tokenizer-fixture-venv"),
                        help="where to create the venv when --python is not given")
    return parser.parse_args()


# SentencePiece piece types (sentencepiece_model.proto), read from the wire format: the Python package
# offers no user-defined test, and its generated proto module needs a particular protobuf release.
SPM_TYPE_UNKNOWN, SPM_TYPE_CONTROL, SPM_TYPE_USER_DEFINED = 2, 3, 4


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def skip_field(data: bytes, pos: int, wire: int) -> int:
    if wire == 0:
        return read_varint(data, pos)[1]
    if wire == 1:
        return pos + 8
    if wire == 2:
        length, pos = read_varint(data, pos)
        return pos + length
    if wire == 5:
        return pos + 4
    raise ValueError(f"unsupported wire type {wire}")


def spm_piece_types(model: bytes) -> list[int]:
    types, pos = [], 0
    while pos < len(model):
        key, pos = read_varint(model, pos)
        number, wire = key >> 3, key & 7
        if number != 1 or wire != 2:  # not ModelProto.pieces
            pos = skip_field(model, pos, wire)
            continue
        length, pos = read_varint(model, pos)
        end, piece_type = pos + length, 1
        while pos < end:
            key, pos = read_varint(model, pos)
            if key >> 3 == 3 and key & 7 == 0:
                piece_type, pos = read_varint(model, pos)
            else:
                pos = skip_field(model, pos, key & 7)
        types.append(piece_type)
    return types


class NeoxReference:
    def __init__(self, nfc: bool = True, split_pattern: str | None = None) -> None:
        from tokenizers import Tokenizer
        document = json.loads(NEOX_JSON.read_text(encoding="utf-8"))
        if not nfc:
            document["normalizer"] = None
        if split_pattern is not None:
            document["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": split_pattern}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
        self.tokenizer = Tokenizer.from_str(json.dumps(document))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


class MistralReference:
    def __init__(self) -> None:
        import sentencepiece
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(MISTRAL_MODEL))
        types = spm_piece_types(MISTRAL_MODEL.read_bytes())
        assert len(types) == self.sp.get_piece_size()
        self.specials = {self.sp.id_to_piece(i): i for i, t in enumerate(types)
                         if t in (SPM_TYPE_UNKNOWN, SPM_TYPE_CONTROL, SPM_TYPE_USER_DEFINED)}
        self.longest_special = max(len(s) for s in self.specials)

    def encode(self, text: str) -> list[int]:
        # Leftmost-longest special tokens first; sentencepiece encodes each text piece between them.
        ids, plain_start, pos = [], 0, 0
        while pos < len(text):
            match = next((text[pos:pos + n] for n in range(min(self.longest_special, len(text) - pos), 0, -1)
                          if text[pos:pos + n] in self.specials), None)
            if match is None:
                pos += 1
                continue
            if pos > plain_start:
                ids += self.sp.encode(text[plain_start:pos])
            ids.append(self.specials[match])
            pos += len(match)
            plain_start = pos
        if plain_start < len(text):
            ids += self.sp.encode(text[plain_start:])
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)


def main() -> None:
    args = parse_args()
    ensure_pinned_interpreter(Path(__file__), PINNED_PACKAGES, Path(args.venv), args.python)
    import sentencepiece
    import tokenizers

    references = {"gpt-neox-20b": NeoxReference(), NO_NFC: NeoxReference(nfc=False),
                  CL100K: NeoxReference(nfc=False, split_pattern=CL100K_PATTERN), "mistral-v3": MistralReference()}
    manifest = {"packages": {"tokenizers": tokenizers.__version__, "sentencepiece": sentencepiece.__version__},
                "format": "ids: little-endian uint16 per token, no BOS/EOS; decoded: UTF-8 text",
                "fixtures": []}
    for name, (relative, n_bytes, tokenizer_names, record_decoded) in INPUTS.items():
        raw = (DATA_DIR / relative).read_bytes()
        if n_bytes is not None:
            raw = raw[:n_bytes]
        text = raw.decode("utf-8")
        for tokenizer_name in tokenizer_names:
            reference = references[tokenizer_name]
            ids = reference.encode(text)
            assert all(0 <= i < UINT16_LIMIT for i in ids)
            out = OUT_DIR / tokenizer_name
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{name}.ids").write_bytes(struct.pack(f"<{len(ids)}H", *ids))
            if record_decoded:
                (out / f"{name}.decoded.txt").write_bytes(reference.decode(ids).encode("utf-8"))
            manifest["fixtures"].append({"tokenizer": tokenizer_name, "name": name, "input": relative,
                                         "input_bytes": len(raw), "tokens": len(ids)})
            print(f"{tokenizer_name}/{name}: {len(raw)} bytes -> {len(ids)} tokens")
    (OUT_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
