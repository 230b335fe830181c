#!/usr/bin/env python3
"""HF transformers baseline for `dendro bench`: MambaForCausalLM with random weights at the published
mamba-130m / mamba-2.8b shapes, or Mamba2ForCausalLM at mamba2-130m / mamba2-2.7b / codestral-7b, on CUDA (fp16 by default) or the CPU (--device cpu, fp32 by default), timing a
prefill of --prefill tokens at batch 1 and --decode greedy tokens at each --batches size, mean and sample
standard deviation over --reps runs after one warm-up. Prints a table comparable to dendro bench's and
optionally writes JSON.

Measured like dendro bench: the prefill computes the logits of the last position only (as Dendro's prefill
does), and decoding is `generate` from a one-token prompt, each step fed one token and the recurrent state
(conv + SSM cache); the warm-up run checks that every step after the first really used that cache.

Needs a Python with torch (a CUDA build for --device cuda) and transformers, e.g. `--python` of
tools/gpu_session.sh. On CUDA, whether HF used its fast kernels (the mamba-ssm and causal-conv1d packages) or
its slow PyTorch path is reported: HF picks the fast path only when both are importable. On the CPU HF always
runs its PyTorch path.
"""
import argparse
import importlib.util
import json
import platform
import statistics
import sys
import time

# The shapes of dendro bench --random-shape. Mamba-1: d_inner = 2 d_model, d_state 16, d_conv 4,
# dt_rank = ceil(d_model / 16). Mamba-2: d_inner = 2 d_model, head_dim 64, d_state 128, d_conv 4.
SHAPES = {  # name: (architecture, d_model, n_layer, n_vocab, n_groups, tied)
    "130m": ("mamba", 768, 24, 50280, 0, True),
    "2.8b": ("mamba", 2560, 64, 50280, 0, True),
    "mamba2-130m": ("mamba2", 768, 24, 50288, 1, True),
    "mamba2-2.7b": ("mamba2", 2560, 64, 50288, 1, True),
    "codestral-7b": ("mamba2", 4096, 64, 32768, 8, False),
}
DEFAULT_DTYPE = {"cuda": "float16", "cpu": "float32"}  # half-precision matmuls on the CPU are not HF's use case


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="130m,2.8b", help="comma-separated: " + ", ".join(SHAPES))
    p.add_argument("--prefill", type=int, default=2048, help="prompt tokens of the prefill test (0 = skip)")
    p.add_argument("--decode", type=int, default=128, help="generated tokens of the decode tests (0 = skip)")
    p.add_argument("--batches", default="1,16", help="comma-separated batch sizes of the decode tests")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions of each test")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--dtype", choices=["float16", "bfloat16", "float32"],
                   help="weight and activation type (default: float16 on cuda, float32 on cpu)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (torch.set_num_threads; 0 = torch's default; --device cpu only)")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()
    if args.reps < 1:
        p.error("--reps must be >= 1")
    if args.threads < 0:
        p.error("--threads must be >= 0")
    if args.threads > 0 and args.device != "cpu":
        p.error("--threads applies to --device cpu only")
    if args.dtype is None:
        args.dtype = DEFAULT_DTYPE[args.device]
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            p.error(f"unknown shape '{shape}': expected one of {', '.join(SHAPES)}")
    return args


def stats(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def timed(synchronize, fn, reps, warm_up=None):
    (warm_up or fn)()
    synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return times


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class CacheUseCheck:
    """Records the forward calls of one generate() and fails unless every call after the first was fed one
    token per sequence and the recurrent cache; a run without the cache would recompute the whole sequence."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        # transformers 5 renamed cache_params to cache.
        cache = next((kwargs[k] for k in ("cache_params", "cache") if kwargs.get(k) is not None), None)
        self.calls.append((input_ids.shape[1], cache is not None))

    def verify(self, n_decode):
        self.handle.remove()
        steps = self.calls[1:]
        if len(self.calls) != n_decode or any(width != 1 or not cached for width, cached in steps):
            sys.exit(f"bench_hf.py: error: generate() did not decode token by token with the recurrent cache "
                     f"(forward calls as (tokens, cache given): {self.calls})")


def main():
    args = parse_args()
    import torch
    import transformers
    from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM

    device = args.device
    if device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("bench_hf.py: error: torch sees no CUDA device")
        fast = all(importlib.util.find_spec(m) is not None for m in ("mamba_ssm", "causal_conv1d"))
        device_name = torch.cuda.get_device_name(0)
        synchronize = torch.cuda.synchronize
    else:
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        fast = False
        device_name = f"{cpu_name()}, {torch.get_num_threads()} threads"

        def synchronize():
            pass
    dtype = getattr(torch, args.dtype)
    results = []
    for shape in args.shapes.split(","):
        arch, d_model, n_layer, n_vocab, n_groups, tied = SHAPES[shape]
        if arch == "mamba":
            config = MambaConfig(vocab_size=n_vocab, hidden_size=d_model, num_hidden_layers=n_layer,
                                 intermediate_size=2 * d_model, state_size=16, conv_kernel=4,
                                 time_step_rank=(d_model + 15) // 16, tie_word_embeddings=tied)
            model_class = MambaForCausalLM
        else:
            config = Mamba2Config(vocab_size=n_vocab, hidden_size=d_model, num_hidden_layers=n_layer, expand=2,
                                  head_dim=64, num_heads=2 * d_model // 64, state_size=128, n_groups=n_groups,
                                  conv_kernel=4, tie_word_embeddings=tied)
            model_class = Mamba2ForCausalLM
        torch.manual_seed(0)
        with torch.device(device):
            model = model_class(config).to(dtype).eval()
        gen = torch.Generator(device=device).manual_seed(0)
        with torch.inference_mode():
            if args.prefill > 0:
                ids = torch.randint(0, n_vocab, (1, args.prefill), device=device, generator=gen)
                times = timed(synchronize, lambda: model(ids, use_cache=False, logits_to_keep=1), args.reps)
                rates = [args.prefill / t for t in times]
                mean, sd = stats(rates)
                results.append({"model": f"random-{shape}", "test": f"pp{args.prefill}", "batch": 1,
                                "tokens_per_second": mean, "tokens_per_second_sd": sd,
                                "tokens_per_second_reps": rates})
            for batch in (int(b) for b in args.batches.split(",")) if args.decode > 0 else ():
                ids = torch.randint(0, n_vocab, (batch, 1), device=device, generator=gen)

                def generate():
                    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.decode,
                                   min_new_tokens=args.decode, do_sample=False,
                                   pad_token_id=0)

                def checked_generate():
                    cache_check = CacheUseCheck(model)
                    generate()
                    cache_check.verify(args.decode)

                times = timed(synchronize, generate, args.reps, warm_up=checked_generate)
                rates = [batch * args.decode / t for t in times]
                mean, sd = stats(rates)
                test = f"tg{args.decode}" + (f" b{batch}" if batch > 1 else "")
                results.append({"model": f"random-{shape}", "test": test, "batch": batch,
                                "tokens_per_second": mean, "tokens_per_second_sd": sd,
                                "tokens_per_second_reps": rates})
        del model
        if device == "cuda":
            torch.cuda.empty_cache()

    path = "fast kernels" if fast else ("slow path" if device == "cuda" else "torch path")
    backend = f"hf {transformers.__version__} {device} {args.dtype} {path} ({device_name})"
    print("| model | backend | test | t/s |\n| --- | --- | --- | ---: |")
    for r in results:
        rate = f"{r['tokens_per_second']:.2f} ± {r['tokens_per_second_sd']:.2f}"
        print(f"| {r['model']} | {backend} | {r['test']} | {rate} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": backend, "fast_kernels": fast, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
