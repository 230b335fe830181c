#!/usr/bin/env python3
"""Builds the HuggingFace reference fixtures under tests/data/hf/.

Each fixture is a tiny random-weight Mamba, FalconMamba or Mamba-2 checkpoint written by transformers'
save_pretrained, with a tokenizer, and a reference.json holding, for fixed prompts, the prompt token ids,
the logits HF transformers computes (fp32, at every position or at listed positions, in logits-N.f32 files:
raw little-endian float32, position-major) and the 32-token greedy continuation of model.generate.
`dendro convert` must turn each checkpoint into a GGUF whose CPU run reproduces these numbers.

Usage (from anywhere):
  tools/make_hf_fixtures.py                    # creates a venv in build/fixture-venv with pinned packages
  tools/make_hf_fixtures.py --python PY        # uses an interpreter that already has the packages
  tools/make_hf_fixtures.py --retrain-tokenizers --corpus tinyshakespeare.txt
The small BPE and SentencePiece tokenizers are trained once (on tinyshakespeare) and committed under
tests/data/hf/tokenizers/; later runs reuse them, so regenerating the models does not need the corpus.
The GPT-NeoX fixture reads the GPT-NeoX-20B tokenizer from tests/data/tokenizers/gpt-neox-20b/, the
Codestral-shaped one the Mistral v3 SentencePiece model from tests/data/tokenizers/mistral-v3/.

Mamba-2 and time_step_limit: transformers clamps dt to config.time_step_limit in its chunked (prefill) path
but not in its one-token (decode) path, so with a limit that binds its own generate() contradicts its full
forward pass. The references are computed with the decode path patched to clamp as well (see
decode_clamps_time_step), which is what Dendro computes in both.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
from pathlib import Path

from pinned_python import TORCH_CPU_INDEX, ensure_pinned_interpreter

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "tests" / "data" / "hf"
TOKENIZER_DIR = OUT_DIR / "tokenizers"
BPE_DIR = TOKENIZER_DIR / "bpe-shakespeare"
SPM_DIR = TOKENIZER_DIR / "spm-shakespeare"
NEOX_DIR = REPO_ROOT / "tests" / "data" / "tokenizers" / "gpt-neox-20b"
MISTRAL_DIR = REPO_ROOT / "tests" / "data" / "tokenizers" / "mistral-v3"
MISTRAL_MODEL_FILE = "tokenizer.model.v3"

# The versions the committed fixtures were generated with.
PINNED_PACKAGES = [
    "torch==2.15.0",
    "transformers==5.23.0",
    "tokenizers==0.23.3",
    "sentencepiece==0.2.3",
    "safetensors==0.8.0",
    "numpy==2.4.6",
]

BPE_VOCAB_SIZE = 512
SPM_VOCAB_SIZE = 500          # deliberately not a multiple of 8
# Embedding rows are the tokenizer's size rounded up to a multiple of 8 (mamba_ssm's pad_vocab_size_multiple),
# so the GPT-NeoX fixture also covers [PAD] rows beyond the tokenizer.
PAD_VOCAB_SIZE_MULTIPLE = 8
MAX_PROMPT_TOKENS = 12
# The long prompt of the Mamba-2 fixtures crosses Dendro's 64-token SSD chunks twice (and many of HF's
# small chunk_size chunks).
LONG_PROMPT_TOKENS = (130, 150)
CONTINUATION_TOKENS = 32
# A stored logit row costs 4 * n_vocab bytes: for the 50k NeoX vocabulary keep only the last position.
ALL_POSITIONS_MAX_VOCAB = 4096
# Greedy continuations must not hinge on near-ties: every step's top-1/top-2 gap must exceed this, so that
# rounding in a correct fp32 (or exact-weight f16/bf16) implementation cannot flip a token.
MIN_GREEDY_MARGIN = 0.02
# A continuation that keeps repeating a few tokens is a weak test of the recurrence.
MIN_DISTINCT_CONTINUATION_TOKENS = 10
MAX_SEED_TRIES = 200
# With tied embeddings a token's own embedding dominates its logits and greedy decoding repeats it: small
# embeddings and a strong mixer output on the residual stream make the continuation depend on the context.
EMBEDDING_STD = 0.2
OUT_PROJ_GAIN = 4.0
# The final norm's weights set the logit scale (what a top-1/top-2 gap is measured against).
FINAL_NORM_GAIN = 5.0

PROMPT_SENTENCES = [
    "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak.",
    "O Romeo, Romeo!",
]
# Public domain (Coriolanus, Act I, Scene 1, as in tinyshakespeare).
LONG_PROMPT_PASSAGE = (
    "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. First Citizen: You are "
    "all resolved rather to die than to famish? All: Resolved. resolved. First Citizen: First, you know Caius "
    "Marcius is chief enemy to the people. All: We know't, we know't. First Citizen: Let us kill him, and we'll "
    "have corn at our own price. Is't a verdict? All: No more talking on't; let it be done: away, away! Second "
    "Citizen: One word, good citizens. First Citizen: We are accounted poor citizens, the patricians good. What "
    "authority surfeits on would relieve us: if they would yield us but the superfluity, while it were "
    "wholesome, we might guess they relieved us humanely; but they think we are too dear: the leanness that "
    "afflicts us, the object of our misery, is as an inventory to particularise their abundance; our "
    "sufferance is a gain to them."
)

# name: (architecture, tokenizer, storage dtype, config overrides, extra save_pretrained arguments[, options])
# options: pad_vocab_multiple (embedding rows = tokenizer size rounded up to it), long_prompt (add a prompt of
# LONG_PROMPT_TOKENS), max_prompt_tokens, all_positions (logits at every position whatever the vocabulary),
# published_codestral_config (config.json keyed as Mamba-Codestral-7B-v0.1's, bare Infinity included).
FIXTURES = {
    "mamba_tied_bpe": ("mamba", "bpe", "float32",
                       dict(hidden_size=32, num_hidden_layers=2, state_size=16, conv_kernel=4,
                            tie_word_embeddings=True), {}),
    "mamba_untied_spm": ("mamba", "spm", "float32",
                         dict(hidden_size=48, num_hidden_layers=2, state_size=4, conv_kernel=3, expand=3,
                              time_step_rank=5, use_bias=True, use_conv_bias=False,
                              tie_word_embeddings=False), {}),
    "falcon_mamba_bpe": ("falcon_mamba", "bpe", "float32",
                         dict(hidden_size=32, num_hidden_layers=2, state_size=16, conv_kernel=4,
                              tie_word_embeddings=False), {}),
    "mamba_sharded_bpe": ("mamba", "bpe", "float32",
                          dict(hidden_size=64, num_hidden_layers=2, state_size=8, conv_kernel=4,
                               tie_word_embeddings=True), {"max_shard_size": "64KB"}),
    "mamba_bf16_neox": ("mamba", "neox", "bfloat16",
                        dict(hidden_size=8, num_hidden_layers=2, state_size=4, conv_kernel=4,
                             tie_word_embeddings=True), {}),
    "mamba_f16_spm": ("mamba", "spm", "float16",
                      dict(hidden_size=32, num_hidden_layers=2, state_size=8, conv_kernel=4,
                           time_step_rank=3, tie_word_embeddings=False), {}),
    "mamba2_tied_bpe": ("mamba2", "bpe", "float32",
                        dict(hidden_size=32, num_hidden_layers=2, expand=2, num_heads=8, head_dim=8, n_groups=1,
                             state_size=16, conv_kernel=4, chunk_size=16, tie_word_embeddings=True), {},
                        dict(long_prompt=True)),
    "mamba2_groups_spm": ("mamba2", "spm", "float32",
                          dict(hidden_size=24, num_hidden_layers=2, expand=2, num_heads=4, head_dim=12, n_groups=2,
                               state_size=12, conv_kernel=3, chunk_size=8, use_bias=True, use_conv_bias=False,
                               tie_word_embeddings=False), {},
                          dict(long_prompt=True, pad_vocab_multiple=16)),
    "mamba2_dtlimit_bpe": ("mamba2", "bpe", "float32",
                           dict(hidden_size=16, num_hidden_layers=3, expand=3, num_heads=6, head_dim=8, n_groups=3,
                                state_size=7, conv_kernel=5, chunk_size=5, time_step_limit=(0.02, 0.2),
                                tie_word_embeddings=False), {},
                           dict(long_prompt=True)),
    "mamba2_codestral_v3": ("mamba2", "mistral-v3", "bfloat16",
                            dict(hidden_size=8, num_hidden_layers=2, expand=2, num_heads=16, head_dim=1, n_groups=8,
                                 state_size=16, conv_kernel=4, chunk_size=256, tie_word_embeddings=False),
                            {"max_shard_size": "400KB"},
                            dict(max_prompt_tokens=6, all_positions=True, published_codestral_config=True)),
}
# Keys of Mamba-Codestral-7B-v0.1's config.json (transformers 4.44) that transformers 5 no longer writes.
CODESTRAL_EXTRA_CONFIG = {"rms_norm": True, "time_step_init_scheme": "random", "time_step_scale": 1.0}
# Fraction of a binding time_step_limit's dt values that must lie outside it, at each end.
MIN_CLAMPED_FRACTION = 0.05


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", help="interpreter with torch, transformers, tokenizers, sentencepiece")
    parser.add_argument("--venv", default=str(REPO_ROOT / "build" / "fixture-venv"),
                        help="where to create the virtual environment when --python is not given")
    parser.add_argument("--retrain-tokenizers", action="store_true",
                        help="train the small BPE and SentencePiece tokenizers again (needs --corpus)")
    parser.add_argument("--corpus", help="training text for --retrain-tokenizers (tinyshakespeare)")
    parser.add_argument("--neox-tokenizer", default=str(NEOX_DIR),
                        help="directory holding the GPT-NeoX-20B tokenizer.json")
    parser.add_argument("--mistral-tokenizer", default=str(MISTRAL_DIR),
                        help=f"directory holding the Mistral v3 {MISTRAL_MODEL_FILE}")
    parser.add_argument("--only", nargs="*", help="build only these fixtures")
    return parser.parse_args()


# ---------------------------------------------------------------------------------------------------------
# Tokenizers


def train_tokenizers(corpus: Path) -> None:
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    # Byte-level BPE shaped like GPT-NeoX's: NFC, byte-level pre-tokenizer with the GPT-2 regex, no prefix space.
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB_SIZE, special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train([str(corpus)], trainer)
    BPE_DIR.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|padding|>")
    fast.save_pretrained(BPE_DIR)

    SPM_DIR.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(SPM_DIR / "tokenizer"),
                                   vocab_size=SPM_VOCAB_SIZE, model_type="bpe", character_coverage=1.0,
                                   byte_fallback=True, normalization_rule_name="identity", unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   num_threads=1, minloglevel=2)
    (SPM_DIR / "tokenizer.vocab").unlink()
    (SPM_DIR / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False}, indent=2) + "\n")


class PromptEncoder:
    """Token ids the HF tokenizer libraries give for a text: `tokenizers` for tokenizer.json, the
    sentencepiece library (plus BOS, as LlamaTokenizer adds it) for tokenizer.model."""

    def __init__(self, kind: str, neox_dir: Path, mistral_dir: Path):
        self.kind = kind
        if kind in ("spm", "mistral-v3"):
            import sentencepiece as spm
            model_file = SPM_DIR / "tokenizer.model" if kind == "spm" else mistral_dir / MISTRAL_MODEL_FILE
            self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
            self.size = self.sp.get_piece_size()
            self.special_ids = dict(bos_token_id=self.sp.bos_id(), eos_token_id=self.sp.eos_id(), pad_token_id=None)
        else:
            from tokenizers import Tokenizer
            path = (BPE_DIR if kind == "bpe" else neox_dir) / "tokenizer.json"
            self.tok = Tokenizer.from_file(str(path))
            self.size = self.tok.get_vocab_size(with_added_tokens=True)
            end_of_text, padding = self.tok.token_to_id("<|endoftext|>"), self.tok.token_to_id("<|padding|>")
            self.special_ids = dict(bos_token_id=end_of_text, eos_token_id=end_of_text, pad_token_id=padding)

    def encode(self, text: str) -> list[int]:
        if self.kind in ("spm", "mistral-v3"):
            return [self.sp.bos_id()] + self.sp.encode(text)
        return self.tok.encode(text, add_special_tokens=False).ids

    def prompt(self, sentence: str, max_tokens: int = MAX_PROMPT_TOKENS, min_tokens: int = 1) -> tuple[str, list[int]]:
        """The longest word prefix of `sentence` that encodes to at most max_tokens tokens."""
        words = sentence.split(" ")
        best = None
        for n in range(1, len(words) + 1):
            text = " ".join(words[:n])
            ids = self.encode(text)
            if len(ids) > max_tokens:
                break
            best = (text, ids)
        assert best is not None and len(best[1]) >= min_tokens, sentence
        return best


def copy_tokenizer(kind: str, dst: Path) -> None:
    if kind in ("neox", "mistral-v3"):
        return  # converted with --vocab tests/data/tokenizers/gpt-neox-20b or mistral-v3
    src = BPE_DIR if kind == "bpe" else SPM_DIR
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)


# ---------------------------------------------------------------------------------------------------------
# Models


def randomize(model, generator) -> None:
    """Random weights with every parameter away from its default (so that a converter or engine that
    ignores, say, the norm weights or D is caught), scaled so that logits are peaked enough to give
    varied greedy continuations."""
    import torch

    def normal(p, std, mean=0.0):
        p.copy_(torch.randn(p.shape, generator=generator) * std + mean)

    def uniform(p, lo, hi):
        p.copy_(torch.rand(p.shape, generator=generator) * (hi - lo) + lo)

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                uniform(p, 0.0, 3.0)                     # A = -exp(A_log) in [-20, -1]
            elif name.endswith(".D"):
                normal(p, 0.5, 1.0)
            elif name.endswith("dt_proj.bias") or name.endswith("mixer.dt_bias"):
                dt = torch.exp(torch.rand(p.shape, generator=generator) * 6.0 - 6.5)  # dt in [0.0015, 0.6]
                p.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            elif name.endswith("norm_f.weight"):
                uniform(p, 0.5 * FINAL_NORM_GAIN, 1.5 * FINAL_NORM_GAIN)
            elif "norm" in name:
                uniform(p, 0.5, 1.5)
            elif name.endswith("conv1d.weight"):
                normal(p, 1.0 / p.shape[-1] ** 0.5)
            elif name.endswith(".bias"):
                normal(p, 0.2)
            elif "embeddings" in name:
                normal(p, EMBEDDING_STD)
            elif "lm_head" in name:
                normal(p, 1.0)
            elif name.endswith("out_proj.weight"):
                normal(p, OUT_PROJ_GAIN / p.shape[1] ** 0.5)
            else:
                normal(p, 1.0 / p.shape[1] ** 0.5)


def build_model(arch: str, config_overrides: dict, vocab_size: int, special_ids: dict, seed: int):
    import torch
    from transformers import (FalconMambaConfig, FalconMambaForCausalLM, Mamba2Config, Mamba2ForCausalLM,
                              MambaConfig, MambaForCausalLM)

    config_class, model_class = {"falcon_mamba": (FalconMambaConfig, FalconMambaForCausalLM),
                                 "mamba2": (Mamba2Config, Mamba2ForCausalLM),
                                 "mamba": (MambaConfig, MambaForCausalLM)}[arch]
    config = config_class(vocab_size=vocab_size, **special_ids, **config_overrides)
    torch.manual_seed(seed)
    model = model_class(config).eval()
    randomize(model, torch.Generator().manual_seed(seed))
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.backbone.embeddings.weight.data_ptr()
    return model


def stored_precision(model, dtype_name: str):
    """The model as it is stored (weights rounded to the storage dtype), computing in fp32."""
    import torch
    dtype = getattr(torch, dtype_name)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    return model


@contextlib.contextmanager
def decode_clamps_time_step(model):
    """Within the block, transformers' Mamba-2 one-token (decode) path clamps dt to time_step_limit as its
    chunked path does (it skips the clamp; see the module docstring). No effect on other models."""
    if model.config.model_type != "mamba2":
        yield
        return
    import torch.nn.functional as F
    from transformers.models.mamba2 import modeling_mamba2

    lo, hi = model.config.time_step_limit
    original = modeling_mamba2.mamba2_selective_state_update

    def clamped(state, hidden_states, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, **kwargs):
        if dt_bias is not None:
            dt = dt + dt_bias.to(dt.dtype)
        if dt_softplus:
            dt = F.softplus(dt)
        return original(state, hidden_states, dt.clamp(min=lo, max=hi), A, B, C, D, dt_bias=None,
                        dt_softplus=False, **kwargs)

    modeling_mamba2.mamba2_selective_state_update = clamped
    try:
        yield
    finally:
        modeling_mamba2.mamba2_selective_state_update = original


def clamped_fractions(model, ids: list[int]) -> tuple[float, float]:
    """The fractions of the first layer's dt values (softplus(dt + dt_bias), over the prompt and heads)
    below and above time_step_limit: evidence that the limit binds."""
    import torch
    import torch.nn.functional as F
    mixer = model.backbone.layers[0].mixer
    projected = []
    handle = mixer.in_proj.register_forward_hook(lambda module, args, out: projected.append(out))
    with torch.no_grad():
        model(torch.tensor([ids]))
    handle.remove()
    dt = F.softplus(projected[0][0, :, -mixer.num_heads:] + mixer.dt_bias)
    lo, hi = model.config.time_step_limit
    return float((dt < lo).float().mean()), float((dt > hi).float().mean())


def greedy(model, ids: list[int]):
    """The 32-token greedy continuation through model.generate (prefill then recurrent decode), and the
    smallest top-1/top-2 logit gap along it, taken from one full forward pass over prompt + continuation
    (which also checks that HF's recurrent path and its scan path agree on every token)."""
    import torch
    with torch.no_grad(), decode_clamps_time_step(model):
        input_ids = torch.tensor([ids])
        model.generation_config.eos_token_id = None
        model.generation_config.pad_token_id = model.config.pad_token_id
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                             max_new_tokens=CONTINUATION_TOKENS, do_sample=False)
        continuation = out[0, len(ids):].tolist()
        assert len(continuation) == CONTINUATION_TOKENS
        logits = model(out[:, :-1]).logits[0, len(ids) - 1:].float()
        top2 = torch.topk(logits, 2, dim=-1).values
        margin = float((top2[:, 0] - top2[:, 1]).min())
        assert logits.argmax(-1).tolist() == continuation, "HF scan and recurrent paths disagree"
    return continuation, margin


def prompt_logits(model, ids: list[int]):
    import torch
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def compact_json(value) -> str:
    """Indented JSON with each list of numbers on one line."""
    text = json.dumps(value, indent=1)
    return re.sub(r"\[[-0-9.,\s]*\]", lambda m: re.sub(r"\s+", " ", m.group(0)), text) + "\n"


def write_published_codestral_config(out: Path) -> None:
    """config.json as Mamba-Codestral-7B-v0.1 publishes it: its extra keys, and the unbounded time_step_limit
    written with Python json's bare Infinity (transformers 5 writes {"__float__": "Infinity"})."""
    path = out / "config.json"
    config = json.loads(path.read_text())
    config.update(CODESTRAL_EXTRA_CONFIG)
    config["time_step_limit"] = [0.0, float("inf")]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def make_fixture(name: str, spec, neox_dir: Path, mistral_dir: Path) -> None:
    import numpy as np
    import torch
    import transformers

    arch, tokenizer_kind, dtype_name, overrides, save_args, *rest = spec
    options = rest[0] if rest else {}
    encoder = PromptEncoder(tokenizer_kind, neox_dir, mistral_dir)
    pad_multiple = options.get("pad_vocab_multiple", PAD_VOCAB_SIZE_MULTIPLE if tokenizer_kind == "neox" else 1)
    vocab_size = -(-encoder.size // pad_multiple) * pad_multiple
    max_tokens = options.get("max_prompt_tokens", MAX_PROMPT_TOKENS)
    prompts = [encoder.prompt(s, max_tokens) for s in PROMPT_SENTENCES]
    if options.get("long_prompt"):
        prompts.append(encoder.prompt(LONG_PROMPT_PASSAGE, LONG_PROMPT_TOKENS[1], LONG_PROMPT_TOKENS[0]))

    for seed in range(MAX_SEED_TRIES):
        model = stored_precision(build_model(arch, overrides, vocab_size, encoder.special_ids, seed), dtype_name)
        runs = [greedy(model, ids) for _, ids in prompts]
        if all(m >= MIN_GREEDY_MARGIN and len(set(c)) >= MIN_DISTINCT_CONTINUATION_TOKENS for c, m in runs):
            break
    else:
        raise SystemExit(f"{name}: no seed below {MAX_SEED_TRIES} gives varied, unambiguous continuations")

    clamped = None
    if "time_step_limit" in overrides:
        clamped = clamped_fractions(model, prompts[-1][1])
        if min(clamped) < MIN_CLAMPED_FRACTION:
            raise SystemExit(f"{name}: time_step_limit binds too rarely (fractions below, above: {clamped})")

    out = OUT_DIR / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.to(getattr(torch, dtype_name)).save_pretrained(out, **save_args)
    model.to(torch.float32)
    copy_tokenizer(tokenizer_kind, out)
    if options.get("published_codestral_config"):
        write_published_codestral_config(out)

    all_positions = options.get("all_positions", vocab_size <= ALL_POSITIONS_MAX_VOCAB)
    reference_prompts = []
    for k, ((text, ids), (continuation, margin)) in enumerate(zip(prompts, runs)):
        logits = prompt_logits(model, ids)
        positions = list(range(len(ids))) if all_positions else [len(ids) - 1]
        logits_file = f"logits-{k}.f32"
        np.ascontiguousarray(logits[positions], dtype="<f4").tofile(out / logits_file)
        reference_prompts.append({
            "text": text, "ids": ids, "logits_file": logits_file, "logit_positions": positions,
            "continuation": continuation, "min_greedy_margin": round(margin, 6),
        })
    vocab_dir = {"neox": NEOX_DIR, "mistral-v3": MISTRAL_DIR}.get(tokenizer_kind)
    reference = {
        "format": "dendro-hf-reference-1",
        "architecture": model.config.architectures[0] if model.config.architectures else type(model).__name__,
        "stored_dtype": dtype_name,
        "tokenizer": tokenizer_kind,
        "vocab_dir": None if vocab_dir is None else os.path.relpath(vocab_dir, out),
        "n_vocab": vocab_size,
        "seed": seed,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "prompts": reference_prompts,
    }
    if clamped is not None:
        reference["time_step_clamped_fractions"] = [round(f, 4) for f in clamped]
    (out / "reference.json").write_text(compact_json(reference))
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"{name}: seed {seed}, {size / 1024:.0f} KiB, margins "
          f"{[r['min_greedy_margin'] for r in reference_prompts]}, distinct "
          f"{[len(set(r['continuation'])) for r in reference_prompts]}"
          + (f", dt clamped below/above {clamped}" if clamped is not None else ""))


def main() -> None:
    args = parse_args()
    ensure_pinned_interpreter(Path(__file__), PINNED_PACKAGES, Path(args.venv), args.python, TORCH_CPU_INDEX)
    import torch
    torch.set_num_threads(1)
    if args.retrain_tokenizers:
        if not args.corpus:
            raise SystemExit("make_hf_fixtures: --retrain-tokenizers needs --corpus FILE")
        train_tokenizers(Path(args.corpus))
    if not (BPE_DIR / "tokenizer.json").exists() or not (SPM_DIR / "tokenizer.model").exists():
        raise SystemExit(f"make_hf_fixtures: no trained tokenizers in {TOKENIZER_DIR}; "
                         "run with --retrain-tokenizers --corpus tinyshakespeare.txt")
    neox_dir, mistral_dir = Path(args.neox_tokenizer), Path(args.mistral_tokenizer)
    for name, spec in FIXTURES.items():
        if args.only and name not in args.only:
            continue
        if spec[1] == "neox" and not (neox_dir / "tokenizer.json").exists():
            raise SystemExit(f"make_hf_fixtures: {neox_dir}/tokenizer.json is missing (--neox-tokenizer DIR)")
        if spec[1] == "mistral-v3" and not (mistral_dir / MISTRAL_MODEL_FILE).exists():
            raise SystemExit(f"make_hf_fixtures: {mistral_dir}/{MISTRAL_MODEL_FILE} is missing (--mistral-tokenizer DIR)")
        make_fixture(name, spec, neox_dir, mistral_dir)


if __name__ == "__main__":
    main()
