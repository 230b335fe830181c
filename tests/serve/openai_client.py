"""Drives a running `dendro serve` with the official openai Python package (pinned, in its own venv).

  tests/serve/openai_client.py --base-url http://127.0.0.1:PORT/v1 [--api-key KEY] [--venv DIR]
  tests/serve/openai_client.py --prepare-only [--venv DIR]   # create the venv and exit (tools/setup.sh --test)

Run by tests/test_serve.cpp. Exit status 77 (the test then skips) only when the venv cannot be created,
e.g. offline with no venv prepared; any failed check is exit status 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tools"))
from pinned_python import ensure_pinned_interpreter  # noqa: E402

PINNED_PACKAGES = ["openai==3.57.0"]
SKIP_STATUS = 77


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"openai client: FAILED: {what}")


def run_checks(base_url: str, api_key: str) -> None:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    models = client.models.list()
    check(len(models.data) == 1, f"one model listed, got {models.data}")
    model = models.data[0].id

    completion = client.completions.create(model=model, prompt="ROMEO:", max_tokens=8, temperature=0)
    check(completion.choices[0].finish_reason == "length", f"finish_reason length, got {completion.choices[0]}")
    check(completion.usage.completion_tokens == 8, f"8 completion tokens, got {completion.usage}")
    streamed = "".join(chunk.choices[0].text for chunk in client.completions.create(
        model=model, prompt="ROMEO:", max_tokens=8, temperature=0, stream=True) if chunk.choices)
    check(streamed == completion.choices[0].text, f"streamed {streamed!r} == whole {completion.choices[0].text!r}")

    messages = [{"role": "user", "content": "JULIET:"}]
    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0, seed=7,
                                          logprobs=True, top_logprobs=2)
    reply = chat.choices[0].message.content
    check(chat.choices[0].message.role == "assistant", f"assistant role, got {chat.choices[0].message}")
    check(len(chat.choices[0].logprobs.content) == 8, "a logprob per generated token")
    pieces = []
    usage = None
    for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    check("".join(pieces) == reply, f"streamed chat {''.join(pieces)!r} == whole {reply!r}")
    check(usage is not None and usage.completion_tokens == 8, f"usage in the stream, got {usage}")

    # The second turn resumes from the first: its earlier messages come from the prefix cache.
    second = client.chat.completions.create(
        model=model, max_tokens=8, temperature=0,
        messages=messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": "ROMEO:"}])
    cached = second.usage.prompt_tokens_details.cached_tokens
    check(cached >= chat.usage.prompt_tokens, f"second turn cached_tokens {cached} >= {chat.usage.prompt_tokens}")

    # Sampling settings beyond OpenAI's own go in extra_body.
    sampled = client.completions.create(model=model, prompt="ROMEO:", max_tokens=8, temperature=0.8, seed=3,
                                        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1})
    again = client.completions.create(model=model, prompt="ROMEO:", max_tokens=8, temperature=0.8, seed=3,
                                      extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1})
    check(sampled.choices[0].text == again.choices[0].text, "the same seed gives the same text")

    try:
        client.completions.create(model=model, prompt="ROMEO:", max_tokens=8, temperature=5)
        check(False, "temperature 5 was accepted")
    except openai.BadRequestError as error:
        check(error.body.get("param") == "temperature" if isinstance(error.body, dict) else True,
              f"the error names temperature: {error.body}")
    try:
        openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
        check(False, "a wrong API key was accepted")
    except openai.AuthenticationError:
        pass
    print("openai client: all checks passed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url")
    parser.add_argument("--api-key", default="none")
    parser.add_argument("--venv", default=str(REPO_ROOT / "build" / "serve-client-venv"))
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    try:
        ensure_pinned_interpreter(Path(__file__), PINNED_PACKAGES, Path(args.venv), None)
    except (SystemExit, Exception) as error:  # pip offline, or no ensurepip to make a venv with
        print(f"openai client: cannot prepare the venv {args.venv} with {' '.join(PINNED_PACKAGES)} "
              f"(offline? run tools/setup.sh --test once online): {error}", file=sys.stderr)
        raise SystemExit(SKIP_STATUS)
    if args.prepare_only:
        return
    if not args.base_url:
        parser.error("--base-url is required")
    run_checks(args.base_url, args.api_key)


if __name__ == "__main__":
    main()
