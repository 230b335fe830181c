#!/usr/bin/env python3
"""Builds the torch.save fixtures under tests/data/torch/ (read by tests/test_torch_checkpoint.cpp).

- mamba1_tied_bpe, mamba1_f16_spm: the HF fixtures tests/data/hf/mamba_tied_bpe and mamba_f16_spm in the
  original state-spaces layout: a config.json of mamba_ssm's MambaConfig and a pytorch_model.bin holding the
  same weights under mamba_ssm's names (backbone.embedding.weight; lm_head.weight sharing the embedding's
  storage when tied, as MambaLMHeadModel.state_dict() has it). mamba1_f16_spm states vocab_size 497 with
  pad_vocab_size_multiple 4, so that mamba_ssm's padding gives the embedding's 500 rows. No tokenizer: like
  the state-spaces checkpoints, they are converted with --vocab (the HF fixture directory).
- mamba2_tied_bpe: the HF fixture tests/data/hf/mamba2_tied_bpe likewise, as a mamba_ssm Mamba2 model.
- mamba2_bf16: random bf16 weights with the names and shapes of a mamba_ssm Mamba2 model (ngroups 2), for
  the reader only (no tokenizer fits its 64 rows; mamba2_tied_bpe is the conversion fixture).
- views.bin: a state dict whose tensors are views (a storage offset; two tensors of one storage).
- noncontiguous.bin: a transposed tensor (torch.save keeps its strides).
- legacy.bin: the pre-zip format (_use_new_zipfile_serialization=False).

Usage: tools/make_torch_fixtures.py [--python PY] [--venv DIR]  (the venv of tools/make_hf_fixtures.py)
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from make_hf_fixtures import PINNED_PACKAGES
from pinned_python import TORCH_CPU_INDEX, ensure_pinned_interpreter

REPO_ROOT = Path(__file__).resolve().parent.parent
HF_DIR = REPO_ROOT / "tests" / "data" / "hf"
OUT_DIR = REPO_ROOT / "tests" / "data" / "torch"
# Only torch (to save), safetensors (to read the HF fixtures) and numpy are needed, at the HF fixtures' pins.
PACKAGES = [p for p in PINNED_PACKAGES if p.split("==")[0] in ("torch", "safetensors", "numpy")]

# fixture: (HF fixture, vocab_size written to config.json, pad_vocab_size_multiple)
MAMBA1_FIXTURES = {
    "mamba1_tied_bpe": ("mamba_tied_bpe", 512, 8),
    "mamba1_f16_spm": ("mamba_f16_spm", 497, 4),
}

# A tiny Mamba2: d_inner = expand * d_model = 32, 4 heads of 8, 2 groups of d_state 8.
MAMBA2_CONFIG = dict(d_model=16, n_layer=2, vocab_size=50, pad_vocab_size_multiple=16, d_state=8, d_conv=3,
                     expand=2, headdim=8, ngroups=2, chunk_size=4)
SEED = 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", help="interpreter with torch, safetensors and numpy")
    parser.add_argument("--venv", default=str(REPO_ROOT / "build" / "fixture-venv"),
                        help="where to create the virtual environment when --python is not given")
    return parser.parse_args()


def write_config(out: Path, config: dict) -> None:
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def fresh_dir(name: str) -> Path:
    out = OUT_DIR / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def as_module_state_dict(state: dict):
    """The tensors as nn.Module.state_dict() returns them: an OrderedDict whose _metadata attribute holds
    each module's version (pickled with BUILD), so the fixtures have the opcodes of a real checkpoint."""
    from collections import OrderedDict
    result = OrderedDict(sorted(state.items()))
    prefixes = {""}
    for name in state:
        parts = name.split(".")[:-1]
        prefixes.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    result._metadata = OrderedDict((p, {"version": 1}) for p in sorted(prefixes))
    return result


def make_mamba1(name: str, hf_name: str, vocab_size: int, pad_multiple: int) -> None:
    import torch
    from safetensors.torch import load_file

    hf = json.loads((HF_DIR / hf_name / "config.json").read_text())
    weights = load_file(str(HF_DIR / hf_name / "model.safetensors"))
    assert hf["intermediate_size"] % hf["hidden_size"] == 0
    state = {}
    for hf_tensor, tensor in weights.items():
        state[hf_tensor.replace("backbone.embeddings.", "backbone.embedding.")] = tensor
    embedding = state["backbone.embedding.weight"]
    assert -(-vocab_size // pad_multiple) * pad_multiple == embedding.shape[0]
    if hf["tie_word_embeddings"]:
        state["lm_head.weight"] = embedding  # one storage, two names
    out = fresh_dir(name)
    torch.save(as_module_state_dict(state), out / "pytorch_model.bin")
    write_config(out, {
        "d_model": hf["hidden_size"],
        "d_intermediate": 0,
        "n_layer": hf["num_hidden_layers"],
        "vocab_size": vocab_size,
        "ssm_cfg": {"layer": "Mamba1", "d_state": hf["state_size"], "d_conv": hf["conv_kernel"],
                    "expand": hf["intermediate_size"] // hf["hidden_size"], "dt_rank": hf["time_step_rank"],
                    "conv_bias": hf["use_conv_bias"], "bias": hf["use_bias"]},
        "attn_layer_idx": [],
        "attn_cfg": {},
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": pad_multiple,
        "tie_embeddings": hf["tie_word_embeddings"],
    })


def make_mamba2() -> None:
    import torch
    c = MAMBA2_CONFIG
    g = torch.Generator().manual_seed(SEED)
    vocab = -(-c["vocab_size"] // c["pad_vocab_size_multiple"]) * c["pad_vocab_size_multiple"]
    d_inner = c["expand"] * c["d_model"]
    n_heads = d_inner // c["headdim"]
    conv_dim = d_inner + 2 * c["ngroups"] * c["d_state"]

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(torch.bfloat16)

    state = {"backbone.embedding.weight": rand(vocab, c["d_model"]), "backbone.norm_f.weight": rand(c["d_model"])}
    for i in range(c["n_layer"]):
        p = f"backbone.layers.{i}."
        state[p + "norm.weight"] = rand(c["d_model"])
        state[p + "mixer.in_proj.weight"] = rand(2 * d_inner + 2 * c["ngroups"] * c["d_state"] + n_heads, c["d_model"])
        state[p + "mixer.conv1d.weight"] = rand(conv_dim, 1, c["d_conv"])
        state[p + "mixer.conv1d.bias"] = rand(conv_dim)
        state[p + "mixer.dt_bias"] = rand(n_heads)
        state[p + "mixer.A_log"] = rand(n_heads)
        state[p + "mixer.D"] = rand(n_heads)
        state[p + "mixer.norm.weight"] = rand(d_inner)
        state[p + "mixer.out_proj.weight"] = rand(c["d_model"], d_inner)
    state["lm_head.weight"] = state["backbone.embedding.weight"]
    out = fresh_dir("mamba2_bf16")
    torch.save(as_module_state_dict(state), out / "pytorch_model.bin")
    ssm_cfg = {"layer": "Mamba2", "d_state": c["d_state"], "d_conv": c["d_conv"], "expand": c["expand"],
               "headdim": c["headdim"], "ngroups": c["ngroups"], "chunk_size": c["chunk_size"],
               "dt_limit": [0.0, float("inf")]}
    write_config(out, {"d_model": c["d_model"], "d_intermediate": 0, "n_layer": c["n_layer"],
                       "vocab_size": c["vocab_size"], "ssm_cfg": ssm_cfg, "attn_layer_idx": [], "attn_cfg": {},
                       "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
                       "pad_vocab_size_multiple": c["pad_vocab_size_multiple"], "tie_embeddings": True})


def make_mamba2_from_hf(name: str, hf_name: str, pad_multiple: int) -> None:
    """An HF Mamba2ForCausalLM fixture in mamba_ssm's layout: the same weights (mamba_ssm's names), its
    MambaConfig with ssm_cfg.layer "Mamba2", for conversion parity with the HF directory."""
    import torch
    from safetensors.torch import load_file

    hf = json.loads((HF_DIR / hf_name / "config.json").read_text())
    weights = load_file(str(HF_DIR / hf_name / "model.safetensors"))
    state = {t.replace("backbone.embeddings.", "backbone.embedding."): w for t, w in weights.items()}
    embedding = state["backbone.embedding.weight"]
    assert embedding.shape[0] == hf["vocab_size"] and hf["vocab_size"] % pad_multiple == 0
    if hf["tie_word_embeddings"]:
        state["lm_head.weight"] = embedding  # one storage, two names
    out = fresh_dir(name)
    torch.save(as_module_state_dict(state), out / "pytorch_model.bin")
    limit = hf.get("time_step_limit", [0.0, float("inf")])
    limit = [float(v["__float__"]) if isinstance(v, dict) else float(v) for v in limit]
    ssm_cfg = {"layer": "Mamba2", "d_state": hf["state_size"], "d_conv": hf["conv_kernel"], "expand": hf["expand"],
               "headdim": hf["head_dim"], "ngroups": hf["n_groups"], "chunk_size": hf["chunk_size"],
               "dt_limit": limit, "bias": hf["use_bias"], "conv_bias": hf["use_conv_bias"]}
    write_config(out, {"d_model": hf["hidden_size"], "d_intermediate": 0, "n_layer": hf["num_hidden_layers"],
                       "vocab_size": hf["vocab_size"], "ssm_cfg": ssm_cfg, "attn_layer_idx": [], "attn_cfg": {},
                       "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
                       "pad_vocab_size_multiple": pad_multiple, "tie_embeddings": hf["tie_word_embeddings"]})


def make_single_files() -> None:
    import torch
    base = torch.arange(10, dtype=torch.float32)
    # Two views of one storage: elements 2..9 as [2, 4] (storage offset 2) and the whole storage.
    torch.save({"offset": base[2:].view(2, 4), "whole": base}, OUT_DIR / "views.bin")
    torch.save({"transposed": torch.arange(6, dtype=torch.float32).reshape(2, 3).t()}, OUT_DIR / "noncontiguous.bin")
    torch.save({"w": torch.ones(2)}, OUT_DIR / "legacy.bin", _use_new_zipfile_serialization=False)


def main() -> None:
    args = parse_args()
    ensure_pinned_interpreter(Path(__file__), PACKAGES, Path(args.venv), args.python, TORCH_CPU_INDEX)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, (hf_name, vocab_size, pad_multiple) in MAMBA1_FIXTURES.items():
        make_mamba1(name, hf_name, vocab_size, pad_multiple)
    make_mamba2()
    make_mamba2_from_hf("mamba2_tied_bpe", "mamba2_tied_bpe", 16)
    make_single_files()
    for f in sorted(OUT_DIR.rglob("*")):
        if f.is_file():
            print(f"{f.relative_to(REPO_ROOT)}: {f.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
