"""or-gen: problems in, reflective trajectories out."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import click
from or_common.cli import ToolRun, amap_records, epilog, io_options
from or_common.reasoner import REASONER_DEFAULTS, ReasonerOptions, reasoner_options
from or_common.records import check_problem

from .session import ReasonerSession


@click.command(
    epilog=epilog(
        "vllm serve Qwen/Qwen3-4B-Thinking-2507 --port 8000 &",
        "or-gen --model Qwen/Qwen3-4B-Thinking-2507 --api-base http://127.0.0.1:8000/v1 --n 8 < test.jsonl > run.jsonl",
        "or-gen --backend vllm --model ckpt/storm --max-model-len 20000 -o run.jsonl --resume < test.jsonl",
        "or-gen --model ckpt/storm --api-base http://gpu1:8000/v1 --api-base http://gpu2:8000/v1 < test.jsonl | or-score | or-score report -",
    )
)
@reasoner_options
@click.option(
    "--n",
    "n_samples",
    type=click.IntRange(min=1),
    default=REASONER_DEFAULTS.samples,
    show_default=True,
    help="Samples per problem.",
)
@io_options
def main(io, n_samples: int, reasoner: ReasonerOptions) -> None:
    """Generate trajectories in which the Reasoner runs its own code while it thinks.

    For each problem and sample: render the prompt with the model's chat template, generate,
    pause at the closing fence of each ```python block, run it in the or-exec sandbox, insert the
    ```output block, and continue the same assistant turn (at most --max-executions runs; later
    blocks get a note that execution is no longer available). Writes one trajectory per
    (problem, sample) with `flow` and `gen`. Failed requests (after retries) become records with
    `gen.error`. With -o FILE --resume, finished samples are skipped and requests already answered
    are replayed from FILE.cache.
    """
    session = ReasonerSession(reasoner, reasoner.cache_for(io.output))
    session.check()  # a run that cannot work stops here: one line, exit 2

    def is_done(problem: dict[str, Any], done: set) -> bool:
        return all((str(problem.get("id")), s) in done for s in range(n_samples))

    def samples(problem: dict[str, Any]) -> list[int]:
        """The samples of a problem not already in the output."""
        check_problem(problem)
        return [s for s in range(n_samples) if (str(problem["id"]), s) not in session.done]

    async def trajectory(problem: dict[str, Any], sample: int) -> dict[str, Any]:
        generator = session.generator
        try:
            return await generator.trajectory(problem, sample)
        finally:
            if generator.cache is not None:  # finished: its cached requests need no memory
                generator.cache.forget((str(problem["id"]), sample))

    def failed(problem: dict[str, Any], sample: int) -> dict[str, Any]:
        return {**problem, "sample": sample, "flow": [], "gen": {"finish": "error"}}

    with GenRun(
        "or-gen", io, is_done=is_done, unit="trajectories", per_record=n_samples, session=session
    ) as run:
        session.done = run.done
        amap_records(
            run,
            trajectory,
            concurrency=reasoner.concurrency,
            parts=samples,
            failure=failed,
            first=session.get,
            close=session.close,
        )
    sys.exit(run.exit_code)


@dataclass
class GenRun(ToolRun):
    """or-gen reads problems and writes trajectories: progress counts trajectories as they are
    written (with tokens/s and executions/s, from the session's generator), the summary names
    both units."""

    session: ReasonerSession | None = None

    def write(self, record: dict[str, Any]) -> None:
        super().write(record)
        if self.session is not None and self.session.generator is not None:
            self.trajectory_done(self.session.generator)

    def trajectory_done(self, generator: Any) -> None:
        if self._progress is None:
            return
        elapsed = self._progress.elapsed()
        self.status(
            f"· {generator.tokens / elapsed:,.0f} tok/s · "
            f"{generator.executions / elapsed:,.1f} exec/s"
        )

    def summary(self) -> str:
        parts = [f"{self.n_in} problems in", f"{self.n_out} trajectories out"]
        if self.n_skipped:
            parts.append(f"{self.n_skipped} problems already done")
        if self.n_bad:
            parts.append(f"{self.n_bad} bad input lines")
        if self.n_failed:
            parts.append(f"{self.n_failed} trajectories failed")
        return f"{self.tool}: " + ", ".join(parts)
