"""Load benchmark of `dendro serve` on loopback: requests/s, time to first token (TTFT) and inter-token latency
(ITL, p50/p99) for 1, 4 and 16 concurrent streaming chat clients, without and with a shared system prompt of
about 2,000 tokens (a prefix-cache hit after the first request). Python standard library only.

  tests/serve/bench_serve.py [--dendro build/bin/dendro] [--model FILE] [--requests-per-client N]
                             [--max-tokens N] [--threads N] [--clients 1,4,16] [--no-cache]
                             [--endpoint chat|completions] [--llama-server PATH] [--system-repeats N]
                             [--prefixes none,system]

Starts its own server (--port 0, --parallel = the most clients) and stops it with SIGTERM; each client sends
its requests one after another (a bounded loop), greedy, max_tokens tokens each. --endpoint completions sends
the text dendro's plain chat format makes of the messages (each content and a newline) to /v1/completions,
so that another server's chat template does not change the prompt. --llama-server benchmarks llama.cpp's
llama-server on the same model instead (its prompt cache as it comes, the same slots and threads).
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEM_LINE = "Now is the winter of our discontent made glorious summer by this sun of York;"
SYSTEM_LINE_REPEATS = 60  # about 2,000 tokens of the bundled model's vocabulary (the table reports the count)
# (GPT-NeoX's vocabulary, of the 130m shape's random model, needs 125 for 2,000 tokens: --system-repeats)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(args, parallel: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    context_per_slot = 4096  # the ~2,000-token system prompt, the user message and the reply
    command = [args.llama_server, "-m", args.model, "--host", "127.0.0.1", "--port", str(port), "--parallel",
               str(parallel), "--threads", str(args.threads), "--ctx-size", str(parallel * context_per_slot)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"bench_serve: llama-server exited: {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return server, port
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("bench_serve: llama-server did not become healthy")


def start_server(args, parallel: int) -> tuple[subprocess.Popen, int]:
    if args.llama_server:
        return start_llama_server(args, parallel)
    command = [args.dendro, "serve", "--port", "0", "--parallel", str(parallel), "--queue", "64",
               "--chat-format", "plain", "--threads", str(args.threads)]
    if args.model:
        command += ["-m", args.model]
    if args.no_cache:
        command += ["--cache-ram", "0"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in server.stderr:
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # drain the log
            return server, int(match.group(1))
    raise SystemExit(f"bench_serve: the server exited: {server.wait()}")


def one_request(port: int, endpoint: str, messages, max_tokens: int, ttft: list, itl: list, prompt_tokens: list,
                cached: list) -> None:
    fields = {"max_tokens": max_tokens, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if endpoint == "chat":
        fields["messages"] = messages
        path = "/v1/chat/completions"
    else:
        fields["prompt"] = "".join(m["content"] + "\n" for m in messages)
        path = "/v1/completions"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    start = time.perf_counter()
    conn.request("POST", path, json.dumps(fields), {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"bench_serve: HTTP {response.status}: {response.read()[:200]}")
    last = None
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            prompt_tokens.append(chunk["usage"]["prompt_tokens"])
            details = chunk["usage"].get("prompt_tokens_details") or {}
            if "cached_tokens" in details:
                cached.append(details["cached_tokens"])
        choice = chunk["choices"][0] if chunk["choices"] else {}
        if choice.get("text") or choice.get("delta", {}).get("content"):
            now = time.perf_counter()
            if last is None:
                ttft.append(now - start)
            else:
                itl.append(now - last)
            last = now
    conn.close()


def percentile(values: list, p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def scenario(port: int, clients: int, system: str | None, args) -> dict:
    ttft, itl, prompt_tokens, cached = [], [], [], []

    def client(c: int) -> None:
        for r in range(args.requests_per_client):
            messages = [{"role": "user", "content": f"RUN {clients}, CLIENT {c}, REQUEST {r}:"}]
            if system:
                messages.insert(0, {"role": "system", "content": system})
            one_request(port, args.endpoint, messages, args.max_tokens, ttft, itl, prompt_tokens, cached)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    n = clients * args.requests_per_client
    return {"clients": clients, "requests": n, "rps": n / wall, "ttft_p50": percentile(ttft, 50),
            "ttft_p99": percentile(ttft, 99), "itl_p50": percentile(itl, 50), "itl_p99": percentile(itl, 99),
            "prompt_tokens": statistics.mean(prompt_tokens) if prompt_tokens else float("nan"),
            "cached_tokens": statistics.mean(cached) if cached else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dendro", default=str(REPO_ROOT / "build" / "bin" / "dendro"))
    parser.add_argument("--model", help="GGUF model (default: the bundled model)")
    parser.add_argument("--requests-per-client", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--no-cache", action="store_true", help="serve without the prefix cache (--cache-ram 0)")
    parser.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    parser.add_argument("--llama-server", help="benchmark this llama-server instead (needs --model)")
    parser.add_argument("--system-repeats", type=int, default=SYSTEM_LINE_REPEATS,
                        help="how many times the shared system message repeats its line")
    parser.add_argument("--prefixes", default="none,system", help="none (no system message), system, or both")
    args = parser.parse_args()
    if args.llama_server and not args.model:
        parser.error("--llama-server needs --model")
    client_counts = [int(c) for c in args.clients.split(",")]
    system = " ".join([SYSTEM_LINE] * args.system_repeats)
    prefixes = {"none": ("none", None), "system": (f"{args.system_repeats} lines", system)}
    server, port = start_server(args, max(client_counts))
    try:
        print("| shared system prompt | clients | requests | req/s | TTFT p50 / p99 (ms) | ITL p50 / p99 (ms) "
              "| prompt tok (cached) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for label, prefix in (prefixes[p] for p in args.prefixes.split(",")):
            for clients in client_counts:
                r = scenario(port, clients, prefix, args)
                print(f"| {label} | {clients} | {r['requests']} | {r['rps']:.1f} | {r['ttft_p50'] * 1e3:.1f} / "
                      f"{r['ttft_p99'] * 1e3:.1f} | {r['itl_p50'] * 1e3:.2f} / {r['itl_p99'] * 1e3:.2f} | "
                      f"{r['prompt_tokens']:.0f} ({r['cached_tokens']:.0f}) |", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
