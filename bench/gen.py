"""Benchmark or-gen's client and loop.

(1) client: trajectories against an instant fake OpenAI-compatible server (another process,
    answering on token ids like vLLM, with the real Qwen3 tokenizer) through or-gen's own client
    (the openai SDK), with an instant stand-in for the sandbox: CPU milliseconds of the generator
    per request (target ≤ 5 ms; the bare SDK costs ~1.6 ms), and the same loop with an in-process
    instant engine, which isolates the loop's own cost (token layer included) from the client's.
(2) first: seconds from starting the `or-gen` command to its first request reaching the server
    (target ≤ 2.5 s), with the import of the tokenizer's library measured apart.
(3) overlap: a fake engine with a fixed batch capacity and a per-token delay (a GPU's continuous
    batching, simplified), trajectories that run real PuLP programs in the real sandbox between
    rounds: achieved tokens/s against the engine's ceiling without tools.

    uv run python bench/gen.py                  # all three
    uv run python bench/gen.py --mode client    # one of client, first, overlap
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from helpers import QWEN  # noqa: E402

SERVER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from fakeserver import FakeServer
from or_common.tokens import load_tokenizer
def script(prompt, body):
    if prompt.count("```output\n") == 0:
        return "Let me model it.\n```python\nprint('Objective:', 145.0)\n```\n"
    return "The solver agrees.</think>\n\n\\boxed{145}"
with FakeServer(script, tokenizer=load_tokenizer(sys.argv[2])) as s:
    print(s.port, flush=True)
    time.sleep(3600)
"""


class InstantRunner:
    """Stands in for the sandbox in the loop benchmark: returns at once."""

    async def run(self, code, limits=None, prelude=()):
        from or_exec.limits import ExecResult

        return ExecResult("ok", 0, "Objective: 145.0\n", "", 0.0)


class InstantEngine:
    """Answers at once, in-process, with ids: the loop's cost with no client or server."""

    name = "instant"
    returns_ids = True

    def __init__(self, tokenizer):
        from or_common.tokens import text_ids

        self.code = "Let me model it.\n```python\nprint('Objective:', 145.0)\n```\n"
        self.answer = "The solver agrees.</think>\n\n\\boxed{145}"
        self.ids = (text_ids(tokenizer, self.code), text_ids(tokenizer, self.answer))
        self.eos = tokenizer.eos_token_id

    async def complete(self, request, *, max_tokens, sampling, seed, route):
        from or_gen.engine import Completion

        if request.text.count("```output\n") == 0:
            return Completion(self.code, "stop", list(self.ids[0]), len(self.ids[0]))
        ids = [*self.ids[1], self.eos]
        return Completion(self.answer, "stop", ids, len(ids))

    async def close(self):
        return None


def _generator(engine, tokenizer):
    from or_common.reasoner import REASONER_PROMPT
    from or_gen.engine import Sampling
    from or_gen.loop import GenConfig, Generator

    config = GenConfig(
        model="tiny",
        backend=engine.name,
        sampling=Sampling(),
        template=REASONER_PROMPT,
        prompt_version="reasoner-v1",
    )
    return Generator(engine, InstantRunner(), tokenizer, config)


async def _measure(gen, n: int, concurrency: int) -> tuple[float, float, int]:
    """(cpu seconds, wall seconds, requests) for n trajectories after a warm-up of 20."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await gen.trajectory({"id": f"p{i}", "question": f"problem {i}"}, 0)

    await asyncio.gather(*(one(i) for i in range(20)))  # warm-up (connections, caches)
    steps0 = gen.requests
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(20, 20 + n)))
    return time.process_time() - c0, time.perf_counter() - w0, gen.requests - steps0


def bench_client(n: int, concurrency: int) -> dict:
    from or_common.tokens import load_tokenizer
    from or_gen.openai_engine import OpenAIEngine

    tokenizer = load_tokenizer(QWEN)
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(ROOT / "tests"), QWEN], stdout=subprocess.PIPE, text=True
    )
    port = int(server.stdout.readline())
    try:
        engine = OpenAIEngine("tiny", [f"http://127.0.0.1:{port}/v1"], retries=0)
        gen = _generator(engine, tokenizer)

        async def measured() -> tuple[float, float, int]:
            try:
                return await _measure(gen, n, concurrency)
            finally:
                await engine.close()

        cpu, wall, steps = asyncio.run(measured())
        bare_cpu, bare_n = asyncio.run(_bare_sdk(port, 2 * n, concurrency))
    finally:
        server.kill()
    alone = _generator(InstantEngine(tokenizer), tokenizer)
    cpu_alone, _, steps_alone = asyncio.run(_measure(alone, n, concurrency))
    return {
        "trajectories": n,
        "requests": steps,
        "token_ids": gen.token_source(),
        "client_cpu_ms_per_request": round(1000 * cpu / steps, 2),
        "requests_per_cpu_s": round(steps / cpu, 1),
        "requests_per_wall_s": round(steps / wall, 1),
        "loop_alone_cpu_ms_per_request": round(1000 * cpu_alone / steps_alone, 2),
        "bare_sdk_cpu_ms_per_request": round(1000 * bare_cpu / bare_n, 2),
        "target_cpu_ms_per_request": 5.0,
    }


async def _bare_sdk(port: int, n: int, concurrency: int) -> tuple[float, int]:
    """The floor: the bare openai SDK sending the same kind of request (a text prompt, no
    loop, no token layer) against the same server, in the same run."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await client.completions.create(
                model="tiny", prompt=f"problem {i}", max_tokens=100, stop=["\n```\n"]
            )

    await asyncio.gather(*(one(i) for i in range(20)))
    c0 = time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    cpu = time.process_time() - c0
    await client.close()
    return cpu, n


def bench_first_request(rounds: int = 3) -> dict:
    """Seconds from spawning `or-gen` to its first request at a fake server (best of rounds)."""
    from fakeserver import FakeServer

    arrivals: list[float] = []

    def script(prompt, body):
        arrivals.append(time.perf_counter())
        return "\\boxed{1}"

    cli = str(Path(sys.executable).parent / "or-gen")
    problem = json.dumps({"id": "a", "question": "Maximize x."}) + "\n"
    firsts = []
    with FakeServer(script) as server:
        for _ in range(rounds):
            arrivals.clear()
            t = time.perf_counter()
            args = [cli, "--model", "m", "--api-base", server.url, "--tokenizer", QWEN]
            subprocess.run(
                [*args, "--n", "1", "--workers", "1", "-q"],
                input=problem.encode(),
                capture_output=True,
                timeout=300,
            )
            firsts.append(arrivals[0] - t if arrivals else float("nan"))
    code = (
        "import time; t = time.perf_counter(); "
        f"from or_common.tokens import load_tokenizer; load_tokenizer({QWEN!r}, light=True); "
        "print(time.perf_counter() - t)"
    )
    tok = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ
    )
    return {
        "first_request_s": round(min(firsts), 2),
        "all_rounds_s": [round(x, 2) for x in firsts],
        "light_tokenizer_load_s_in_a_fresh_process": round(float(tok.stdout.strip() or "nan"), 2),
        "torch_installed": _has("torch"),
        "target_s": 2.5,
    }


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class BatchEngine:
    """A fake inference engine: at most `capacity` sequences decode at once, one token per
    sequence every `delay` seconds; the rest wait. Its ceiling is capacity / delay tokens/s."""

    name = "fake-batch"
    returns_ids = False

    def __init__(self, capacity: int, delay: float, tokens_per_round: int):
        self.slots = asyncio.Semaphore(capacity)
        self.delay = delay
        self.tokens_per_round = tokens_per_round
        self.tokens = 0

    async def complete(self, request, *, max_tokens, sampling, seed, route):
        from or_gen.engine import Completion
        from programs import PROGRAMS

        n = self.tokens_per_round
        async with self.slots:
            await asyncio.sleep(n * self.delay)
        self.tokens += n
        if request.text.count("```output\n") == 0:
            name = ["production_lp", "transport_lp", "facility_milp", "knapsack"][seed % 4]
            filler = "x" * max(0, 4 * n - len(PROGRAMS[name]) - 40)
            return Completion(f"{filler}\n```python{PROGRAMS[name]}```\n", "stop", None, n)
        return Completion("The solver agrees.</think>\n\\boxed{1}", "stop", None, n)

    async def close(self):
        return None


def bench_overlap(
    n: int, capacity: int, delay: float, tokens_per_round: int, concurrency: int, tools: bool = True
) -> dict:
    from or_common.reasoner import REASONER_PROMPT
    from or_exec.pool import Pool
    from or_gen.engine import Sampling
    from or_gen.loop import GenConfig, Generator

    async def go():
        pool = Pool(workers=2)
        await pool.start(["pulp"])
        engine = BatchEngine(capacity, delay, tokens_per_round)
        config = GenConfig(
            model="fake", backend="fake", sampling=Sampling(), template=REASONER_PROMPT, chat=True
        )
        gen = Generator(engine, pool if tools else InstantRunner(), None, config)
        sem = asyncio.Semaphore(concurrency)
        results = []

        async def one(i: int) -> None:
            async with sem:
                results.append(await gen.trajectory({"id": f"p{i}", "question": f"q{i}"}, 0))

        await asyncio.gather(*(one(i) for i in range(8)))  # warm-up
        t0 = engine.tokens, time.perf_counter()
        results.clear()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0[1]
        await pool.close()
        execs = sum(r["gen"]["executions"] for r in results)
        ok = sum(1 for r in results for s in r["flow"] if s.get("status") == "ok")
        exec_s = sum(r["gen"]["exec_seconds"] for r in results)
        return (engine.tokens - t0[0]) / wall, execs, ok, exec_s, wall

    tps, execs, ok, exec_s, wall = asyncio.run(go())
    ceiling = capacity / delay
    return {
        "trajectories": n,
        "capacity": capacity,
        "per_token_delay_ms": delay * 1000,
        "concurrency": concurrency,
        "executions": execs,
        "executions_ok": ok,
        "mean_exec_ms": round(1000 * exec_s / max(execs, 1), 1),
        "tokens_per_s": round(tps),
        "ceiling_tokens_per_s": round(ceiling),
        "share_of_ceiling": round(tps / ceiling, 3),
        "wall_s": round(wall, 2),
        "target_share": 0.9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trajectories", type=int, default=400)
    parser.add_argument("--mode", choices=["all", "client", "first", "overlap"], default="all")
    args = parser.parse_args()
    result: dict = {}
    if args.mode in ("all", "client"):
        result["client"] = bench_client(args.trajectories, concurrency=64)
    if args.mode in ("all", "first"):
        result["first_request"] = bench_first_request()
    if args.mode in ("all", "overlap"):
        shape = {
            "n": args.trajectories // 2,
            "capacity": 16,
            "delay": 0.002,
            "tokens_per_round": 200,
            "concurrency": 32,
        }
        with_tools = bench_overlap(**shape)
        without = bench_overlap(**shape, tools=False)  # the same workload, instant executions
        result["overlap_with_sandbox"] = with_tools
        result["overlap_without_tools"] = without
        result["throughput_with_tools_vs_without"] = round(
            with_tools["tokens_per_s"] / without["tokens_per_s"], 3
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
