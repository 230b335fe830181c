#!/usr/bin/env python3
"""Builds tests/data/stream_decode/hf_decode.json: what HF transformers decodes prompt + continuation to.

`dendro run` prints the prompt, then streams the continuation's text token by token. The text it streams
must be decode(prompt_ids + continuation_ids) minus decode(prompt_ids), decode being the tokenizer's
whole-sequence decode with skip_special_tokens=True (for SentencePiece the dummy-prefix space is dropped at
the start of the sequence only, not at the start of the continuation). For every tokenizer and case this
script records the two id sequences and HF's two decoded texts; tests/test_stream_decode_hf.cpp streams the
continuation through Dendro's StreamDecoder and compares.

Cases: a continuation as the tokenizer splits prompt + text, or built from parts: {"text": ...} (encoded
without special tokens), {"token": piece} (a vocabulary entry, e.g. a byte-fallback "<0xE2>"; the case is
left out for a tokenizer without it), {"special": "bos" | "eos"}.

Usage (from anywhere):
  tools/make_stream_decode_fixtures.py               # creates a venv in build/stream-decode-venv, pinned packages
  tools/make_stream_decode_fixtures.py --python PY   # uses an interpreter that already has the packages
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from pinned_python import ensure_pinned_interpreter

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_FILE = REPO_ROOT / "tests" / "data" / "stream_decode" / "hf_decode.json"

PINNED_PACKAGES = ["transformers==5.24.0", "tokenizers==0.23.3", "sentencepiece==0.2.3", "protobuf==7.36.2"]

# name -> (kind, path relative to the repository root). "dir": a directory AutoTokenizer loads;
# "spm_model": a bare SentencePiece model, loaded as a LlamaTokenizer; "tokenizer_json": a bare tokenizer.json.
TOKENIZERS = {
    "spm-shakespeare": ("dir", "tests/data/hf/tokenizers/spm-shakespeare"),
    "dendro-shakespeare": ("dir", "models/hf/dendro-shakespeare"),
    "mistral-v3": ("spm_model", "tests/data/tokenizers/mistral-v3/tokenizer.model.v3"),
    "bpe-shakespeare": ("dir", "tests/data/hf/tokenizers/bpe-shakespeare"),
    "gpt-neox-20b": ("tokenizer_json", "tests/data/tokenizers/gpt-neox-20b/tokenizer.json"),
}

# (name, prompt text, continuation): a str is split off prompt + str as the tokenizer encodes the whole;
# a list is built from parts.
CASES = [
    ("word_after_period", "Thou art her.", " commissioned to the king"),
    ("prompt_ends_in_space", "Thou art ", [{"text": "her"}]),
    ("prompt_ends_in_newline", "ROMEO:\n", [{"text": "Thou art"}]),
    ("continuation_starts_with_space", "Thou art her.", [{"text": " and so"}]),
    ("multibyte_characters", "Price:", [{"text": " 5\u20ac \u2014 na\u00efve \U0001F600 \u65e5\u672c\u8a9e"}]),
    ("byte_fallback_euro", "Price: 5", [{"token": "<0xE2>"}, {"token": "<0x82>"}, {"token": "<0xAC>"}, {"text": " ok"}]),
    ("byte_fallback_lone_invalid_byte", "Price: 5", [{"token": "<0xE2>"}, {"text": " ok"}]),
    ("special_tokens_inside", "Thou art", [{"text": " her"}, {"special": "eos"}, {"text": " more"}, {"special": "bos"},
                                           {"text": " again"}]),
    ("bos_only_prompt", "", [{"text": "Thou art"}]),
    ("bos_only_prompt_space_first", "", [{"text": " Thou"}]),
    ("eos_first_then_text", "Thou art", [{"special": "eos"}, {"text": " her"}]),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", help="interpreter that has the pinned packages (skips the venv)")
    parser.add_argument("--venv", default=str(REPO_ROOT / "build" / "stream-decode-venv"),
                        help="where to create the venv when --python is not given")
    return parser.parse_args()


def spm_adds_dummy_prefix(model_file: Path) -> bool:
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(model_file.read_bytes())
    return model.normalizer_spec.add_dummy_prefix


def load_tokenizer(kind: str, path: Path, scratch: Path):
    from transformers import AutoTokenizer, LlamaTokenizer, PreTrainedTokenizerFast

    # transformers' LlamaTokenizer prepends the dummy-prefix space (and strips it in decode) whatever the
    # SentencePiece model says unless add_prefix_space tells it; the bundled model is trained without one.
    if kind == "dir":
        spm_model = path / "tokenizer.model"
        if not spm_model.exists():
            return AutoTokenizer.from_pretrained(str(path))
        return AutoTokenizer.from_pretrained(str(path), add_prefix_space=spm_adds_dummy_prefix(spm_model))
    if kind == "spm_model":
        # LlamaTokenizer looks for tokenizer.model; Mistral's model is a SentencePiece model with BOS added.
        model_dir = scratch / path.stem
        model_dir.mkdir()
        shutil.copy(path, model_dir / "tokenizer.model")
        return LlamaTokenizer.from_pretrained(str(model_dir), add_bos_token=True,
                                              add_prefix_space=spm_adds_dummy_prefix(path))
    return PreTrainedTokenizerFast(tokenizer_file=str(path))


def prompt_ids(tok, text: str) -> list[int]:
    ids = tok(text)["input_ids"] if text else []
    if getattr(tok, "add_bos_token", False) and tok.bos_token_id is not None and (not ids or ids[0] != tok.bos_token_id):
        ids = [tok.bos_token_id] + ids
    return ids


def continuation_ids(tok, prompt: list[int], prompt_text: str, continuation) -> list[int] | None:
    if isinstance(continuation, str):
        whole = prompt_ids(tok, prompt_text + continuation)
        if whole[:len(prompt)] != prompt:
            raise SystemExit(f"the tokenizer does not split {prompt_text + continuation!r} after the prompt")
        return whole[len(prompt):]
    ids: list[int] = []
    for part in continuation:
        if "text" in part:
            ids += tok.encode(part["text"], add_special_tokens=False)
        elif "token" in part:
            token_id = tok.convert_tokens_to_ids(part["token"])
            if token_id is None or token_id == tok.unk_token_id:
                return None
            ids.append(token_id)
        else:
            token_id = tok.bos_token_id if part["special"] == "bos" else tok.eos_token_id
            if token_id is None:
                return None
            ids.append(token_id)
    return ids


def main() -> None:
    args = parse_args()
    ensure_pinned_interpreter(Path(__file__), PINNED_PACKAGES, Path(args.venv), args.python)
    import sentencepiece
    import tokenizers
    import transformers

    out = {
        "format": "dendro-stream-decode-1",
        "packages": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "sentencepiece": sentencepiece.__version__},
        "tokenizers": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        for name, (kind, relative) in TOKENIZERS.items():
            tok = load_tokenizer(kind, REPO_ROOT / relative, Path(scratch))
            entry = {"name": name, "source": relative, "vocab_size": len(tok), "cases": []}
            for case_name, prompt_text, continuation in CASES:
                prompt = prompt_ids(tok, prompt_text)
                if not prompt:
                    continue  # no BOS: nothing to continue from (dendro run needs a non-empty prompt)
                cont = continuation_ids(tok, prompt, prompt_text, continuation)
                if cont is None:
                    continue
                entry["cases"].append({
                    "name": case_name,
                    "prompt_ids": prompt,
                    "continuation_ids": cont,
                    "prompt_text": tok.decode(prompt, skip_special_tokens=True),
                    "full_text": tok.decode(prompt + cont, skip_special_tokens=True),
                })
            out["tokenizers"].append(entry)
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT_FILE.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
