"""In-process engines: vLLM (GPU nodes) and transformers (small models, CPU, tests).

Both are imported only when chosen, so `or-gen --help` and the openai backend never load torch.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from .engine import STOPS, Completion, Sampling, resolve_stop


class VLLMEngine:
    """vLLM's async engine with prefix caching on: every resumed request shares its prefix with
    the previous one, so only the new part is computed."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
    ):
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        args = AsyncEngineArgs(
            model=model,
            tokenizer=tokenizer or model,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=True,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            seed=seed,
        )
        self.engine = AsyncLLMEngine.from_engine_args(args)
        self._ids = itertools.count()

    def sampling_params(self, max_tokens: int, sampling: Sampling, seed: int | None) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=max_tokens,
            stop=list(STOPS),
            include_stop_str_in_output=True,
            seed=seed,
            **sampling.extra,
        )

    async def complete(
        self,
        prompt: str,
        *,
        max_tokens: int,
        sampling: Sampling,
        seed: int | None,
        route: int,
        context: str = "",
    ) -> Completion:
        params = self.sampling_params(max_tokens, sampling, seed)
        final = None
        async for output in self.engine.generate(prompt, params, f"or-gen-{next(self._ids)}"):
            final = output
        assert final is not None
        out = final.outputs[0]
        text, finish = resolve_stop(out.text, out.finish_reason or "stop", context)
        return Completion(text, finish, len(out.token_ids), len(final.prompt_token_ids or []))

    async def close(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown is not None:
            shutdown()


class TransformersEngine:
    """`model.generate` with stop strings, one request at a time in a worker thread."""

    name = "transformers"

    def __init__(
        self, model: str, tokenizer: Any, *, device: str | None = None, dtype: str = "auto"
    ):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.tokenizer = tokenizer
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(self.device).eval()
        self.lock = asyncio.Lock()

    def _generate(
        self, prompt: str, max_tokens: int, sampling: Sampling, seed: int | None
    ) -> tuple[str, str, int, int]:
        torch = self.torch
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.device)
        if seed is not None:
            torch.manual_seed(seed)
        sample = sampling.temperature > 0
        kwargs: dict[str, Any] = (
            {"temperature": sampling.temperature, "top_p": sampling.top_p} if sample else {}
        )
        with torch.no_grad():
            out = self.model.generate(
                **enc,
                max_new_tokens=max_tokens,
                do_sample=sample,
                stop_strings=list(STOPS),
                tokenizer=self.tokenizer,
                pad_token_id=self.tokenizer.pad_token_id
                if self.tokenizer.pad_token_id is not None
                else self.tokenizer.eos_token_id,
                **kwargs,
                **sampling.extra,
            )
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        eos = self.tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        ended = bool(new) and new[-1] in eos_ids
        if ended:
            new = new[:-1]
        text = self.tokenizer.decode(new, skip_special_tokens=False)
        finish = "stop" if ended else ("length" if len(new) >= max_tokens else "stop")
        return text, finish, len(new) + int(ended), int(enc["input_ids"].shape[1])

    async def complete(
        self,
        prompt: str,
        *,
        max_tokens: int,
        sampling: Sampling,
        seed: int | None,
        route: int,
        context: str = "",
    ) -> Completion:
        async with self.lock:
            text, finish, n, prompt_tokens = await asyncio.to_thread(
                self._generate, prompt, max_tokens, sampling, seed
            )
        text, finish = resolve_stop(text, finish, context)
        return Completion(text, finish, n, prompt_tokens)

    async def close(self) -> None:
        return None
