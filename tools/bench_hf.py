#!/usr/bin/env python3
"""HF transformers baseline for `dendro bench`: MambaForCausalLM with random weights at the published
mamba-130m / mamba-2.8b shapes, on CUDA, in fp16 (or --dtype), timing a prefill of --prefill tokens at batch 1
and --decode greedy tokens at each --batches size, mean and sample standard deviation over --reps runs after
one warm-up. Prints a table comparable to dendro bench's and optionally writes JSON.

Needs a Python with torch (CUDA build) and transformers, e.g. `--python` of tools/gpu_session.sh. Whether HF
used its fast CUDA kernels (the mamba-ssm and causal-conv1d packages) or its slow PyTorch path is reported:
HF picks the fast path only when both are importable.
"""
import argparse
import importlib.util
import json
import statistics
import sys
import time

SHAPES = {  # d_model, n_layer; d_inner = 2 d_model, d_state 16, d_conv 4, dt_rank = ceil(d_model / 16)
    "130m": (768, 24),
    "2.8b": (2560, 64),
}
N_VOCAB = 50280


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="130m,2.8b", help="comma-separated: 130m, 2.8b")
    p.add_argument("--prefill", type=int, default=2048, help="prompt tokens of the prefill test (0 = skip)")
    p.add_argument("--decode", type=int, default=128, help="generated tokens of the decode tests (0 = skip)")
    p.add_argument("--batches", default="1,16", help="comma-separated batch sizes of the decode tests")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions of each test")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()
    if args.reps < 1:
        p.error("--reps must be >= 1")
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            p.error(f"unknown shape '{shape}': expected one of {', '.join(SHAPES)}")
    return args


def stats(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def timed(torch, fn, reps):
    fn()  # warm-up
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main():
    args = parse_args()
    import torch
    import transformers
    from transformers import MambaConfig, MambaForCausalLM

    if not torch.cuda.is_available():
        sys.exit("bench_hf.py: error: torch sees no CUDA device")
    dtype = getattr(torch, args.dtype)
    fast = all(importlib.util.find_spec(m) is not None for m in ("mamba_ssm", "causal_conv1d"))
    device_name = torch.cuda.get_device_name(0)
    results = []
    for shape in args.shapes.split(","):
        d_model, n_layer = SHAPES[shape]
        config = MambaConfig(vocab_size=N_VOCAB, hidden_size=d_model, num_hidden_layers=n_layer,
                             intermediate_size=2 * d_model, state_size=16, conv_kernel=4,
                             time_step_rank=(d_model + 15) // 16, tie_word_embeddings=True)
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = MambaForCausalLM(config).to(dtype).eval()
        gen = torch.Generator(device="cuda").manual_seed(0)
        with torch.inference_mode():
            if args.prefill > 0:
                ids = torch.randint(0, N_VOCAB, (1, args.prefill), device="cuda", generator=gen)
                times = timed(torch, lambda: model(ids, use_cache=False), args.reps)
                mean, sd = stats([args.prefill / t for t in times])
                results.append({"model": f"random-{shape}", "test": f"pp{args.prefill}", "batch": 1,
                                "tokens_per_second": mean, "tokens_per_second_sd": sd})
            for batch in (int(b) for b in args.batches.split(",")) if args.decode > 0 else ():
                ids = torch.randint(0, N_VOCAB, (batch, 1), device="cuda", generator=gen)

                def generate():
                    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.decode,
                                   min_new_tokens=args.decode, do_sample=False,
                                   pad_token_id=0)

                times = timed(torch, generate, args.reps)
                mean, sd = stats([batch * args.decode / t for t in times])
                test = f"tg{args.decode}" + (f" b{batch}" if batch > 1 else "")
                results.append({"model": f"random-{shape}", "test": test, "batch": batch,
                                "tokens_per_second": mean, "tokens_per_second_sd": sd})
        del model
        torch.cuda.empty_cache()

    backend = f"hf {transformers.__version__} {args.dtype} {'fast kernels' if fast else 'slow path'} ({device_name})"
    print("| model | backend | test | t/s |\n| --- | --- | --- | ---: |")
    for r in results:
        rate = f"{r['tokens_per_second']:.2f} ± {r['tokens_per_second_sd']:.2f}"
        print(f"| {r['model']} | {backend} | {r['test']} | {rate} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": backend, "fast_kernels": fast, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
