"""verl's agent loop for the code-in-thinking rollout (SPEC §5 "or-grpo").

Registered through `actor_rollout_ref.rollout.agent.agent_loop_config_path`, a YAML list whose
entry names this class in `_target_`; the entry's other keys reach the constructor (hydra
instantiates one loop per trajectory inside each Ray agent-loop worker):

    - name: code_in_thinking
      _target_: or_grpo.agent_loop.CodeInThinkingAgentLoop
      sandbox: local            # or http://host:8765 (`or-exec serve`, shared by all workers)
      max_executions: 4
      exec_timeout: 10.0
      rollout_log: /runs/storm/rollouts   # per-trajectory lines for metrics.jsonl (optional)

The rollout itself (token ids, masks, log probs, the execution budget, the cut at the response
length) is `or_grpo.rollout.rollout`; this class only wires verl's server manager and the
sandbox to it. verl is imported here at module level: only verl's workers and the tests import
this module, never `or-grpo --help`.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any
from uuid import uuid4

from or_common.reasoner import REASONER_DEFAULTS
from or_common.tokens import prompt_ids, stop_ids
from or_exec.limits import Limits
from verl.experimental.agent_loop.agent_loop import (
    AgentLoopBase,
    AgentLoopMetrics,
    AgentLoopOutput,
)

from .metrics import log_trajectory
from .reward import compute_score
from .rollout import model_segments, rollout

AGENT_NAME = "code_in_thinking"

#: One sandbox per (spec, limits, event loop) and process: every trajectory of a worker shares it.
_sandboxes: dict[tuple[Any, ...], asyncio.Future] = {}


async def _start_sandbox(spec: str, limits: Limits, workers: int) -> Any:
    if spec.startswith(("http://", "https://")):
        from or_exec.server import RemotePool

        pool: Any = RemotePool(spec, limits=limits)
    elif spec == "local":
        from or_exec.pool import Pool

        pool = Pool(workers=workers, limits=limits)
    else:
        raise ValueError(
            f"sandbox must be 'local' or an http(s) URL of `or-exec serve`, not {spec!r}"
        )
    await pool.start(["pulp"])
    return pool


async def get_sandbox(spec: str, limits: Limits, workers: int) -> Any:
    """The process's sandbox for `spec` ('local' or the URL of `or-exec serve`), started once."""
    key = (spec, limits, workers, id(asyncio.get_running_loop()))
    future = _sandboxes.get(key)
    if future is None:
        future = _sandboxes[key] = asyncio.ensure_future(_start_sandbox(spec, limits, workers))
    try:
        return await asyncio.shield(future)
    except BaseException:
        if future.done() and _sandboxes.get(key) is future:
            del _sandboxes[key]  # let the next trajectory try again
        raise


def trajectory_step(step: Any, weight_versions: list[Any], split: str) -> int | None:
    """The training step a trajectory belongs to. verl's V1 trainer passes it; the legacy one
    (what `or-grpo train` runs) does not, but its servers report the weight version: step s
    rolls out with the weights of step s - 1 and validates after updating them to s."""
    if step is not None:
        return int(step)
    versions = [int(v) for v in weight_versions if v is not None]
    if not versions:
        return None
    return min(versions) + (0 if split == "val" else 1)


def default_sandbox_workers(agent_workers: int) -> int:
    """Local pool size: the node's cores shared by verl's agent-loop workers."""
    return max(2, (os.cpu_count() or 2) // max(1, agent_workers))


class CodeInThinkingAgentLoop(AgentLoopBase):
    """Generate to the closing fence, run the block, append its output (mask 0), continue."""

    def __init__(
        self,
        *args: Any,
        sandbox: Any = "local",
        max_executions: int = REASONER_DEFAULTS.max_executions,
        exec_timeout: float = REASONER_DEFAULTS.exec_timeout,
        exec_memory_mb: int = REASONER_DEFAULTS.exec_memory,
        sandbox_workers: int | None = None,
        rollout_log: str | None = None,
        launch: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.response_length = int(self.rollout_config.response_length)
        self.sandbox_spec = sandbox
        self.max_executions = int(max_executions)
        self.limits = Limits(timeout=float(exec_timeout), memory_mb=int(exec_memory_mb))
        agent_workers = int(self.rollout_config.agent.get("num_workers", 8) or 8)
        self.sandbox_workers = int(sandbox_workers or default_sandbox_workers(agent_workers))
        self.rollout_log = rollout_log
        self.launch = launch

    async def _sandbox(self) -> Any:
        if not isinstance(self.sandbox_spec, str):  # an object with `run` (tests, embedding)
            return self.sandbox_spec
        return await get_sandbox(self.sandbox_spec, self.limits, self.sandbox_workers)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        messages = [dict(m) for m in kwargs["raw_prompt"]]
        ids = await asyncio.get_running_loop().run_in_executor(
            None, prompt_ids, self.tokenizer, messages
        )
        ids = self._cap_text_prompt_length(ids)
        sandbox = await self._sandbox()
        request_id = uuid4().hex  # one id per trajectory: its rounds stick to one server
        priority = int(kwargs.get("priority", 0) or 0)
        timing = {"generate": 0.0, "execute": 0.0}

        async def generate(prompt: list[int], params: dict[str, Any]) -> Any:
            start = time.perf_counter()
            try:
                extra = {"priority": priority} if priority else {}
                return await self.server_manager.generate(
                    request_id=request_id, prompt_ids=prompt, sampling_params=params, **extra
                )
            finally:
                timing["generate"] += time.perf_counter() - start

        async def execute(code: str) -> Any:
            start = time.perf_counter()
            try:
                return await sandbox.run(code, self.limits)
            finally:
                timing["execute"] += time.perf_counter() - start

        result = await rollout(
            self.tokenizer,
            ids,
            generate,
            execute,
            sampling_params,
            self.response_length,
            self.max_executions,
        )
        flow = result.flow
        behaviour = result.metrics()
        segments = await asyncio.get_running_loop().run_in_executor(
            None,
            model_segments,
            self.tokenizer,
            result.response_ids,
            result.response_mask,
            stop_ids(self.tokenizer),
        )
        steps = [int(s) for s in result.global_steps if s is not None]
        fallback = kwargs.get("global_steps")
        fallback = int(fallback) if fallback is not None else None
        extra_fields: dict[str, Any] = {
            **behaviour,
            # what the sandbox answered, for whoever reads the batch or the rollout dumps (the
            # reward never does: a program's printed text is not the model's)
            "executor_texts": [s["text"] for s in flow if s.get("role") == "executor"],
            "executor_statuses": [s.get("status") for s in flow if s.get("role") == "executor"],
            # what the reward judges: the model's own text, split by the response mask
            "model_segments": segments,
            # as or-gen stamps it: a turn whose prompt opened <think> must close it to answer
            "prompt_opens_think": self.tokenizer.decode(
                list(result.prompt_ids[-4:]), skip_special_tokens=False
            )
            .rstrip()
            .endswith("<think>"),
            "turn_scores": [],
            "tool_rewards": [],
            "min_global_steps": min(steps) if steps else fallback,
            "max_global_steps": max(steps) if steps else fallback,
        }
        if self.rollout_log:
            await self._log(kwargs, result, extra_fields)
        return AgentLoopOutput(
            prompt_ids=result.prompt_ids,
            response_ids=result.response_ids,
            response_mask=result.response_mask,
            response_logprobs=result.response_logprobs,
            num_turns=1 + len(flow),  # the user turn, then each segment of the assistant turn
            metrics=AgentLoopMetrics(
                generate_sequences=timing["generate"], tool_calls=timing["execute"]
            ),
            extra_fields=extra_fields,
        )

    async def _log(self, row: dict[str, Any], result: Any, extra_fields: dict[str, Any]) -> None:
        """One line for metrics.jsonl: the reward verl will compute, with the same function
        (which judges `model_segments` and counts `code_blocks` from the extra fields: the
        decoded response is not needed)."""
        assert self.rollout_log is not None  # called only when a rollout log is set
        text = ""
        reward_model = row.get("reward_model") or {}
        extra_info = dict(row.get("extra_info") or {})
        score = compute_score(
            row.get("data_source", ""),
            text,
            reward_model.get("ground_truth"),
            {**extra_info, **extra_fields},
        )
        split = extra_info.get("split", "train")
        log_trajectory(
            self.rollout_log,
            {
                "step": trajectory_step(row.get("global_steps"), result.global_steps, split),
                "split": split,
                "launch": self.launch,
                "data_source": row.get("data_source"),
                "id": extra_info.get("id"),
                "correct": score["score"],
                **{k: extra_fields[k] for k in ("code_blocks", "executions", "exec_statuses")},
                "response_tokens": extra_fields["response_tokens"],
                "finish": extra_fields["finish"],
            },
        )
