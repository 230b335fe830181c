#!/usr/bin/env python3
"""Trains Dendro's bundled default model: a small Mamba-1 language model on tinyshakespeare.

The result is a genuine Hugging Face checkpoint (MambaForCausalLM.save_pretrained) with a SentencePiece
tokenizer.model trained on the training split only, ready for `dendro convert`. The last 10 % of the text
(HELD_OUT_BYTES) is held out: never seen by the tokenizer trainer nor the model. After training, the
script computes HF transformers' perplexity on the held-out text with exactly the chunking and scoring of
`dendro perplexity` (llama.cpp's rules) and records it in perplexity.json next to the checkpoint.

Run by a user:  python3 tools/train_bundled_model.py --data tinyshakespeare.txt --out-dir models/hf/NAME
It creates its own virtual environment with pinned packages unless --python names an interpreter that
already has them (or the running one has them). Every hyper-parameter and the exact command are written
to training.json in the output directory.
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from pinned_python import TORCH_CPU_INDEX, ensure_pinned_interpreter

PINNED_PACKAGES = [
    "torch==2.15.0",
    "transformers==5.23.0",
    "sentencepiece==0.2.3",
    "mambapy==1.2.0",
    "numpy==2.4.6",
    "safetensors==0.8.0",
]
# The running interpreter is kept when it has these; otherwise the script re-runs under --python or a venv.
REQUIRED_MODULES = ["mambapy.pscan", "sentencepiece", "torch", "transformers"]
HELD_OUT_BYTES = 111_539  # the last 10 % of tinyshakespeare (1,115,394 bytes)

# SentencePiece special ids; config.json carries the same ids.
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="tinyshakespeare.txt")
    p.add_argument("--out-dir", required=True, help="directory for the HF checkpoint")
    p.add_argument("--python", help="interpreter that has the pinned packages (skips the venv)")
    p.add_argument("--venv", default=str(Path.home() / ".cache" / "dendro-train-venv"),
                   help="where to create the virtual environment when needed")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=256, help="tokens per training crop (BOS included)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (the cosine schedule's length)")
    p.add_argument("--time-budget-minutes", type=float, default=0,
                   help="if > 0, train for this wall time instead of --steps, the cosine decay following "
                        "the elapsed time")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine floor as a fraction of --lr")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between saved checkpoints")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--eval-ctx", type=int, default=256, help="n_ctx of the perplexity evaluation")
    p.add_argument("--bench-steps", type=int, default=0,
                   help="only time this many training steps and exit (for sizing a run)")
    p.add_argument("--eval-only", action="store_true",
                   help="skip training; evaluate the checkpoint already in --out-dir")
    return p.parse_args(argv)


def split_text(data_path):
    text = Path(data_path).read_bytes().decode("utf-8")
    if len(text.encode("utf-8")) <= HELD_OUT_BYTES:
        sys.exit(f"{data_path}: too short to hold out {HELD_OUT_BYTES} bytes")
    raw = text.encode("utf-8")
    return raw[:-HELD_OUT_BYTES].decode("utf-8"), raw[-HELD_OUT_BYTES:].decode("utf-8")


def train_tokenizer(train_text, out_dir, vocab_size):
    """BPE SentencePiece on the training split's lines. Identity normalisation and no dummy prefix keep the
    encoding of a whole file equal to the concatenation of its lines' pieces (newlines fall back to the
    byte token <0x0A>), so any text round-trips; byte_fallback covers characters never seen in training."""
    import sentencepiece as spm

    lines_path = out_dir / "tokenizer_train_lines.txt"
    lines_path.write_text(train_text, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(lines_path), model_prefix=str(out_dir / "tokenizer"), model_type="bpe",
        vocab_size=vocab_size, character_coverage=1.0, byte_fallback=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
        split_digits=True, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID,
        num_threads=1, minloglevel=2)
    lines_path.unlink()
    (out_dir / "tokenizer.vocab").unlink()
    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer",
        "model_max_length": 1_000_000,
        "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
        "add_bos_token": True, "add_eos_token": False,
    }, indent=2) + "\n")
    return spm.SentencePieceProcessor(model_file=str(out_dir / "tokenizer.model"))


def encode_file(sp, text):
    """Token ids of a whole text with the model's default BOS, as `dendro perplexity` tokenizes it."""
    return [BOS_ID] + sp.encode(text)


def perplexity(model, tokens, n_ctx):
    """llama.cpp's perplexity: chunks of n_ctx tokens from a fresh state, the first token of each chunk
    replaced by BOS, the second half scored (positions n_ctx/2+1 .. n_ctx-1 predicted from their
    prefixes); uncertainty from the spread of per-token log-likelihoods."""
    import torch

    n_chunk = len(tokens) // n_ctx
    if n_chunk < 1:
        raise ValueError(f"need at least {n_ctx} tokens, have {len(tokens)}")
    first = n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    progress = []
    with torch.no_grad():
        for i in range(n_chunk):
            chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
            chunk[0] = BOS_ID
            logits = model(torch.tensor([chunk]), use_cache=False).logits[0].double()
            logprobs = torch.log_softmax(logits[first:n_ctx - 1], dim=-1)
            targets = torch.tensor(chunk[first + 1:n_ctx])
            token_nll = -logprobs.gather(1, targets[:, None])[:, 0]
            nll += float(token_nll.sum())
            nll2 += float((token_nll ** 2).sum())
            count += len(chunk) - 1 - first
            progress.append(math.exp(nll / count))
    mean = nll / count
    var = nll2 / count - mean * mean
    stderr = math.sqrt(var / (count - 1)) if var > 0 and count > 1 else 0.0
    ppl = math.exp(mean)
    return {"n_ctx": n_ctx, "n_chunks": n_chunk, "n_scored_tokens": count, "n_tokens": len(tokens),
            "ppl": ppl, "ppl_uncertainty": ppl * stderr, "chunk_running_ppl": progress}


def sequential_scan(model):
    """Evaluation uses HF's reference recurrence (a loop over time), not the parallel training scan."""
    for layer in model.backbone.layers:
        layer.mixer.use_mambapy = False


def build_model(args, vocab_size):
    """use_mambapy: on the CPU, HF's training forward runs mambapy's parallel scan instead of its Python loop
    over time steps."""
    from transformers import MambaConfig, MambaForCausalLM

    config = MambaConfig(
        vocab_size=vocab_size, hidden_size=args.d_model, state_size=args.d_state,
        num_hidden_layers=args.n_layer, expand=args.expand, conv_kernel=4,
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
        use_mambapy=True, tie_word_embeddings=True)
    return MambaForCausalLM(config)


def save_checkpoint(model, out_dir):
    """save_pretrained into a fresh directory, then swap it in, so a usable checkpoint always exists."""
    import shutil

    tmp = out_dir.with_name(out_dir.name + ".saving")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (tmp / name).exists():
            os.replace(tmp / name, out_dir / name)
    shutil.rmtree(tmp)


def cosine_lr(progress, args):
    """Cosine decay from --lr to --lr * --min-lr-ratio as progress goes from 0 to 1."""
    floor = args.lr * args.min_lr_ratio
    return floor + (args.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Schedule:
    """Linear warm-up, then cosine decay over either a fixed number of steps or a wall-time budget. With a
    budget the decay follows the elapsed time (the run adapts to the CPU time it actually gets on a shared
    machine) and training stops when the budget is spent; the steps taken are recorded."""

    def __init__(self, args):
        self.args = args
        self.budget = args.time_budget_minutes * 60
        self.warmup_end_time = None

    def lr(self, step, elapsed):
        args = self.args
        if step < args.warmup_steps:
            return args.lr * (step + 1) / args.warmup_steps
        if not self.budget:
            return cosine_lr((step - args.warmup_steps) / max(1, args.steps - args.warmup_steps), args)
        if self.warmup_end_time is None:
            self.warmup_end_time = elapsed
        return cosine_lr((elapsed - self.warmup_end_time) / max(1e-9, self.budget - self.warmup_end_time), args)

    def finished(self, steps_done, elapsed):
        if self.budget:
            return elapsed >= self.budget
        return steps_done >= self.args.steps


def train(args, model, train_ids, out_dir, log):
    import torch

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "A_log" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "A_log" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95))
    data = torch.tensor(train_ids, dtype=torch.long)
    gen = torch.Generator().manual_seed(args.seed)
    body = args.seq_len - 1  # each crop is BOS + seq_len-1 training tokens, as evaluation chunks start
    schedule = Schedule(args)
    model.train()
    start = time.time()
    running = None
    done = 0
    while True:
        lr = schedule.lr(done, time.time() - start)
        for group in optimizer.param_groups:
            group["lr"] = lr
        offsets = torch.randint(0, len(data) - body, (args.batch_size,), generator=gen)
        crops = torch.stack([data[o:o + body] for o in offsets.tolist()])
        batch = torch.cat([torch.full((args.batch_size, 1), BOS_ID, dtype=torch.long), crops], dim=1)
        loss = model(batch, labels=batch, use_cache=False).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        loss_value = loss.item()
        running = loss_value if running is None else 0.95 * running + 0.05 * loss_value
        done += 1
        elapsed = time.time() - start
        last = schedule.finished(done, elapsed) or (args.bench_steps and done >= args.bench_steps)
        if done % args.log_every == 0 or last:
            log(f"step {done} loss {loss_value:.4f} smooth {running:.4f} lr {lr:.2e} "
                f"{elapsed:.0f}s {elapsed / done:.3f}s/step")
        if not args.bench_steps and (done % args.checkpoint_every == 0 or last):
            save_checkpoint(model, out_dir)
            log(f"checkpoint saved at step {done}")
        if last:
            return done, elapsed


def main():
    args = parse_args(sys.argv[1:])
    ensure_pinned_interpreter(Path(__file__), PINNED_PACKAGES, Path(args.venv), args.python, TORCH_CPU_INDEX,
                              run_here_if_importable=REQUIRED_MODULES)

    import platform

    import sentencepiece as spm
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "training.log"

    def log(message):
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        if not args.bench_steps:
            with open(log_path, "a") as f:
                f.write(line + "\n")

    train_text, held_out = split_text(args.data)

    if args.eval_only:
        sp = spm.SentencePieceProcessor(model_file=str(out_dir / "tokenizer.model"))
        from transformers import MambaForCausalLM
        model = MambaForCausalLM.from_pretrained(out_dir)
    else:
        sp = train_tokenizer(train_text, out_dir, args.vocab_size)
        train_ids = sp.encode(train_text)
        log(f"tokenizer: vocab {sp.get_piece_size()}, training split {len(train_text.encode())} bytes -> "
            f"{len(train_ids)} tokens")
        model = build_model(args, sp.get_piece_size())
        n_params = sum(p.numel() for p in model.parameters())
        log(f"model: {n_params} parameters, d_model {args.d_model}, n_layer {args.n_layer}, "
            f"d_state {args.d_state}, threads {torch.get_num_threads()}")
        steps_done, train_seconds = train(args, model, train_ids, out_dir, log)
        if args.bench_steps:
            return
        record = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "hyper_parameters": {k: v for k, v in vars(args).items()
                                 if k not in ("python", "venv", "eval_only")},
            "n_parameters": n_params,
            "training_split_tokens": len(train_ids),
            "steps_done": steps_done,
            "tokens_seen": steps_done * args.batch_size * args.seq_len,
            "training_seconds": round(train_seconds, 1),
            "hardware": f"{platform.processor() or platform.machine()}, {args.threads} torch thread(s)",
            "torch": torch.__version__,
        }
        (out_dir / "training.json").write_text(json.dumps(record, indent=2) + "\n")

    model.eval()
    sequential_scan(model)
    held_out_tokens = encode_file(sp, held_out)
    result = {"held_out_bytes": HELD_OUT_BYTES, "full": perplexity(model, held_out_tokens, args.eval_ctx)}
    log(f"held-out perplexity (ctx {args.eval_ctx}): {result['full']['ppl']:.4f} "
        f"+/- {result['full']['ppl_uncertainty']:.5f}")
    import transformers
    result["reference"] = f"transformers {transformers.__version__}, torch {torch.__version__}, float32, CPU"
    (out_dir / "perplexity.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
