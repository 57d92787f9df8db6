"""Benchmark or-gen's loop.

(1) loop: trajectories against an instant fake OpenAI-compatible server (in another process)
    through the real litellm client, with an instant stand-in for the sandbox: trajectory steps
    (engine requests) per CPU-second of the generator; and the same loop with an in-process
    instant engine, which isolates the loop's own cost from the HTTP client's.
(2) overlap: a fake engine with a fixed batch capacity and a per-token delay (a GPU's
    continuous batching, simplified), trajectories that run real PuLP programs in the real
    sandbox between rounds: achieved tokens/s against the engine's ceiling without tools.

    uv run python bench/gen.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

SERVER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from fakeserver import FakeServer
def script(prompt, body):
    if prompt.count("```output\n") == 0:
        return "Let me model it.\n```python\nprint('Objective:', 145.0)\n```\n"
    return "The solver agrees.</think>\n\n\\boxed{145}"
with FakeServer(script) as s:
    print(s.port, flush=True)
    time.sleep(3600)
"""


class InstantRunner:
    """Stands in for the sandbox in the loop benchmark: returns at once."""

    async def run(self, code, limits=None, prelude=()):
        from or_exec.limits import ExecResult

        return ExecResult("ok", 0, "Objective: 145.0\n", "", 0.0)


def bench_loop(n: int, concurrency: int) -> dict:
    from or_gen.engine import Sampling
    from or_gen.loop import GenConfig, Generator
    from or_gen.openai_engine import OpenAIEngine
    from or_gen.prompt import REASONER_PROMPT, load_tokenizer
    from tiny import make_tokenizer

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(ROOT / "tests")], stdout=subprocess.PIPE, text=True
    )
    port = int(server.stdout.readline())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            make_tokenizer(Path(tmp))
            tokenizer = load_tokenizer(tmp)
            engine = OpenAIEngine("tiny", [f"http://127.0.0.1:{port}/v1"], retries=0)
            config = GenConfig(
                model="tiny",
                backend="openai",
                sampling=Sampling(),
                template=REASONER_PROMPT,
                prompt_version="reasoner-v1",
            )
            gen = Generator(engine, InstantRunner(), tokenizer, config)

            async def go() -> tuple[float, float, int]:
                sem = asyncio.Semaphore(concurrency)

                async def one(i: int) -> None:
                    async with sem:
                        await gen.trajectory({"id": f"p{i}", "question": f"problem {i}"}, 0)

                await asyncio.gather(*(one(i) for i in range(20)))  # warm-up (connections, caches)
                steps0 = gen.requests
                c0, w0 = time.process_time(), time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(20, 20 + n)))
                return time.process_time() - c0, time.perf_counter() - w0, gen.requests - steps0

            async def measured() -> tuple[float, float, int]:
                try:
                    return await go()
                finally:
                    await engine.close()

            cpu, wall, steps = asyncio.run(measured())
    finally:
        server.kill()
    return {
        "trajectories": n,
        "steps": steps,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "steps_per_cpu_s": round(steps / cpu, 1),
        "steps_per_wall_s": round(steps / wall, 1),
        "target_steps_per_core_s": 200,
    }


class InstantEngine:
    """Answers at once, in-process: measures the loop with no client or server cost at all."""

    name = "instant"

    async def complete(self, prompt, *, max_tokens, sampling, seed, route, context=""):
        from or_gen.engine import Completion

        if prompt.count("```output\n") == 0:
            return Completion(
                "Let me model it.\n```python\nprint('Objective:', 145.0)\n```\n", "fence", 20
            )
        return Completion("The solver agrees.</think>\n\n\\boxed{145}", "stop", 10)

    async def close(self):
        return None


def bench_loop_alone(n: int, concurrency: int) -> dict:
    from or_gen.engine import Sampling
    from or_gen.loop import GenConfig, Generator
    from or_gen.prompt import REASONER_PROMPT, load_tokenizer
    from tiny import make_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        make_tokenizer(Path(tmp))
        gen = Generator(
            InstantEngine(),
            InstantRunner(),
            load_tokenizer(tmp),
            GenConfig(
                model="tiny", backend="instant", sampling=Sampling(), template=REASONER_PROMPT
            ),
        )

        async def go() -> tuple[float, int]:
            sem = asyncio.Semaphore(concurrency)

            async def one(i: int) -> None:
                async with sem:
                    await gen.trajectory({"id": f"p{i}", "question": f"problem {i}"}, 0)

            await asyncio.gather(*(one(i) for i in range(20)))
            steps0, c0 = gen.requests, time.process_time()
            await asyncio.gather(*(one(i) for i in range(20, 20 + n)))
            return time.process_time() - c0, gen.requests - steps0

        cpu, steps = asyncio.run(go())
    return {
        "trajectories": n,
        "steps": steps,
        "cpu_s": round(cpu, 3),
        "steps_per_cpu_s": round(steps / cpu, 1),
    }


class BatchEngine:
    """A fake inference engine: at most `capacity` sequences decode at once, one token per
    sequence every `delay` seconds; the rest wait. Its ceiling is capacity / delay tokens/s."""

    name = "fake-batch"

    def __init__(self, capacity: int, delay: float, tokens_per_round: int):
        self.slots = asyncio.Semaphore(capacity)
        self.delay = delay
        self.tokens_per_round = tokens_per_round
        self.tokens = 0

    async def complete(self, prompt, *, max_tokens, sampling, seed, route, context=""):
        from or_gen.engine import Completion
        from programs import PROGRAMS

        n = self.tokens_per_round
        async with self.slots:
            await asyncio.sleep(n * self.delay)
        self.tokens += n
        if prompt.count("```output\n") == 0:
            name = ["production_lp", "transport_lp", "facility_milp", "knapsack"][seed % 4]
            filler = "x" * max(0, 4 * n - len(PROGRAMS[name]) - 40)
            return Completion(f"{filler}\n```python{PROGRAMS[name]}```\n", "fence", n)
        return Completion("The solver agrees.</think>\n\\boxed{1}", "stop", n)

    async def close(self):
        return None


def bench_overlap(
    n: int, capacity: int, delay: float, tokens_per_round: int, concurrency: int, tools: bool = True
) -> dict:
    from or_exec.pool import Pool
    from or_gen.engine import Sampling
    from or_gen.loop import GenConfig, Generator
    from or_gen.prompt import REASONER_PROMPT

    async def go():
        pool = Pool(workers=2)
        await pool.start(["pulp"])
        engine = BatchEngine(capacity, delay, tokens_per_round)
        config = GenConfig(
            model="fake", backend="fake", sampling=Sampling(), template=REASONER_PROMPT, chat=True
        )
        gen = Generator(engine, pool if tools else InstantRunner(), None, config)
        gen.prompt_for = lambda record: (
            [{"role": "user", "content": record["question"]}],
            "",
        )  # no template needed
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
    args = parser.parse_args()
    shape = {
        "n": args.trajectories // 2,
        "capacity": 16,
        "delay": 0.002,
        "tokens_per_round": 200,
        "concurrency": 32,
    }
    with_tools = bench_overlap(**shape)
    without = bench_overlap(**shape, tools=False)  # the same workload with instant executions
    result = {
        "loop_through_litellm": bench_loop(args.trajectories, concurrency=64),
        "loop_alone": bench_loop_alone(args.trajectories, concurrency=64),
        "overlap_with_sandbox": with_tools,
        "overlap_without_tools": without,
        "throughput_with_tools_vs_without": round(
            with_tools["tokens_per_s"] / without["tokens_per_s"], 3
        ),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
