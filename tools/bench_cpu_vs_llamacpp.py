#!/usr/bin/env python3
"""Dendro's CPU backend and llama.cpp's, side by side on the same GGUF files: prefill (pp) and decode (tg)
tokens/s, decode's bandwidth (the weights, and the weights with the state read and written each step) as a
share of the machine's read bandwidth (as `dendro bench` measures them), one file after the other, the two engines alternating, so that both see the same machine.

    tools/bench_cpu_vs_llamacpp.py --dendro build/bin/dendro --llama-bench /path/to/llama-bench \\
        -p 512 -n 128 -r 3 -t 2 FILE.gguf...

llama-bench is built by hand from llama.cpp's sources, outside this repository. Without --llama-bench only
Dendro is measured. With --rounds K each file is measured K times, the engines alternating each round, and
the table keeps each engine's best round per test (on a shared machine the slow rounds measure the
neighbours). Prints a Markdown table; --json-out keeps every raw report.
"""
import argparse
import json
import subprocess
import sys


def run_json(command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_cpu_vs_llamacpp: {' '.join(command)} failed ({done.returncode}):\n{done.stderr.strip()}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as e:
        sys.exit(f"bench_cpu_vs_llamacpp: {' '.join(command)} printed no JSON ({e}):\n{done.stdout[:400]}")


def dendro_report(args, path):
    report = run_json([args.dendro, "bench", "-m", path, "-p", str(args.n_prompt), "-n", str(args.n_gen),
                       "-r", str(args.repetitions), "-t", str(args.threads), "--device", "cpu", "--json"])
    rates = {row["test"][:2]: row for row in report["results"]}
    return {
        "pp": rates["pp"]["tokens_per_second"], "pp_sd": rates["pp"]["tokens_per_second_sd"],
        "tg": rates["tg"]["tokens_per_second"], "tg_sd": rates["tg"]["tokens_per_second_sd"],
        "weight_bytes": report["weight_bytes_per_token"],
        "state_bytes": report["state_bytes_per_sequence"],
        "read_gbs": report["read_bandwidth"]["gb_per_s"],
        "raw": report,
    }


def llama_report(args, path):
    rows = run_json([args.llama_bench, "-m", path, "-p", str(args.n_prompt), "-n", str(args.n_gen),
                     "-r", str(args.repetitions), "-t", str(args.threads), "-o", "json"])
    out = {"raw": rows}
    for row in rows:
        kind = "pp" if row["n_prompt"] > 0 else "tg"
        out[kind], out[kind + "_sd"] = row["avg_ts"], row["stddev_ts"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dendro", required=True)
    parser.add_argument("--llama-bench")
    parser.add_argument("-p", "--n-prompt", type=int, default=512)
    parser.add_argument("-n", "--n-gen", type=int, default=128)
    parser.add_argument("-r", "--repetitions", type=int, default=3)
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json-out")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    if args.n_prompt < 1 or args.n_gen < 1 or args.repetitions < 1 or args.threads < 1 or args.rounds < 1:
        sys.exit("bench_cpu_vs_llamacpp: -p, -n, -r, -t and --rounds must be at least 1")

    def best(reports):
        # Per test, the round with the highest mean; the rest of the first report (sizes, bandwidth probe).
        out = dict(reports[0], rounds=[r["raw"] for r in reports])
        for kind in ("pp", "tg"):
            top = max(reports, key=lambda r: r[kind])
            out[kind], out[kind + "_sd"] = top[kind], top[kind + "_sd"]
            if "read_gbs" in top and kind == "tg":
                out["read_gbs"] = top["read_gbs"]
        return out

    results = []
    for path in args.files:
        rounds = {"dendro": [], "llama.cpp": []}
        for _ in range(args.rounds):
            rounds["dendro"].append(dendro_report(args, path))
            if args.llama_bench:
                rounds["llama.cpp"].append(llama_report(args, path))
        entry = {"file": path, "dendro": best(rounds["dendro"])}
        if args.llama_bench:
            entry["llama.cpp"] = best(rounds["llama.cpp"])
        results.append(entry)
        print(f"bench_cpu_vs_llamacpp: {path} done", file=sys.stderr)

    pp, tg = f"pp{args.n_prompt}", f"tg{args.n_gen}"
    print(f"| file | Dendro {pp} | Dendro {tg} | decode GB/s: weights, with states (% of read bw) |"
          + (f" llama.cpp {pp} | llama.cpp {tg} | {pp} ratio | {tg} ratio |" if args.llama_bench else ""))
    print("| --- | ---: | ---: | ---: |" + (" ---: | ---: | ---: | ---: |" if args.llama_bench else ""))
    for entry in results:
        d = entry["dendro"]
        gbs = d["tg"] * d["weight_bytes"] / 1e9
        with_states = d["tg"] * (d["weight_bytes"] + 2 * d["state_bytes"]) / 1e9
        line = (f"| {entry['file'].rsplit('/', 1)[-1]} | {d['pp']:.1f} ± {d['pp_sd']:.1f} | {d['tg']:.2f} ± {d['tg_sd']:.2f}"
                f" | {gbs:.1f}, {with_states:.1f} ({100 * gbs / d['read_gbs']:.0f} %, {100 * with_states / d['read_gbs']:.0f} %"
                f" of {d['read_gbs']:.1f}) |")
        if args.llama_bench:
            ll = entry["llama.cpp"]
            line += (f" {ll['pp']:.1f} ± {ll['pp_sd']:.1f} | {ll['tg']:.2f} ± {ll['tg_sd']:.2f}"
                     f" | {d['pp'] / ll['pp']:.2f}x | {d['tg'] / ll['tg']:.2f}x |")
        print(line)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
