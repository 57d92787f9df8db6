"""verl's server-manager interface over a running OpenAI-compatible vLLM server.

The agent loop (`or_grpo.agent_loop.CodeInThinkingAgentLoop`) asks verl's server manager for
`generate(request_id=…, prompt_ids=…, sampling_params=…)` and reads back a `TokenOutput`
(token ids, their log probs, a stop reason). `ServedModel` answers that call from `vllm serve`
(`/v1/completions` with the prompt as token ids, `return_token_ids`, `logprobs`), so the real
rollout runs against a model served anywhere: to debug rollouts without a training job, and in
the CPU tests against vLLM's CPU build.

    manager = ServedModel("http://127.0.0.1:8000/v1", "my-model")
    loop = CodeInThinkingAgentLoop(..., server_manager=manager)

Log probs are vLLM's (`logprobs_mode` raw_logprobs by default: the model's own distribution,
before temperature and top-k/top-p), one per generated id, as verl's own vLLM server returns.
"""

from __future__ import annotations

from typing import Any

#: verl's sampling fields that the completions endpoint takes under the same name
PASSED = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "stop",
    "include_stop_str_in_output",
    "ignore_eos",
    "seed",
)


class ServedModel:
    """`server_manager.generate` (verl 0.9.1's AsyncLLMServerManager interface) for one
    OpenAI-compatible vLLM server."""

    def __init__(
        self, api_base: str, model: str, *, timeout: float = 600.0, max_tokens: int = 1024
    ):
        import httpx

        self.url = api_base.rstrip("/") + "/completions"
        self.model = model
        self.max_tokens = max_tokens  # when the caller sets none (verl's response_length)
        self.client = httpx.AsyncClient(timeout=timeout)
        self.requests = 0

    def body(self, prompt_ids: list[int], sampling_params: dict[str, Any]) -> dict[str, Any]:
        """The completions request for verl's sampling params."""
        params = dict(sampling_params)
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": list(prompt_ids),
            "max_tokens": int(params.get("max_tokens") or self.max_tokens),
            "return_token_ids": True,
            "skip_special_tokens": False,
        }
        body.update({k: params[k] for k in PASSED if params.get(k) is not None})
        if params.get("logprobs"):
            body["logprobs"] = 1  # the sampled token's own log prob comes with it
        return body

    async def generate(
        self,
        *,
        request_id: str,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        **_: Any,
    ) -> Any:
        """One completion as verl's TokenOutput; an aborted request says so (`stop_reason`
        "aborted"), as verl's own vLLM server does."""
        from verl.workers.rollout.replica import TokenOutput

        response = await self.client.post(self.url, json=self.body(prompt_ids, sampling_params))
        response.raise_for_status()
        self.requests += 1
        choice = response.json()["choices"][0]
        ids = list(choice.get("token_ids") or [])
        log_probs = None
        if sampling_params.get("logprobs"):
            log_probs = [float(x) for x in (choice.get("logprobs") or {}).get("token_logprobs", [])]
        finish = choice.get("finish_reason")
        stop_reason = "aborted" if finish == "abort" else "completed"
        return TokenOutput(
            token_ids=ids,
            log_probs=log_probs,
            stop_reason=stop_reason,
            extra_fields={"request_id": request_id},
        )

    async def aclose(self) -> None:
        await self.client.aclose()
