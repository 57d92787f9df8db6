"""or-gen, or-intervene and or-grpo's rollout against a real engine: vLLM's CPU build (installed
by `just test-deps`) serving a tiny Qwen3 with the real tokenizer that has learnt to write one
```python block and an answer (tests/real_engine.py). The server runs on 127.0.0.1 with the
documented CPU settings; `--backend vllm` runs the same engine in-process. Every check is token
for token: what the engine saw and produced (as the server reports it) against the records.
The GRPO update on CPU (verl's advantage and loss, one optimizer step) is at the end, on the
same server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, read_jsonl
from real_engine import ANSWER, BLOCK, OUTPUT, train_tiny_reasoner, vllm_available, vllm_server

pytestmark = [
    pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (just test-deps)"),
    pytest.mark.timeout(900),
]


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    return read_jsonl(FIXTURES / "problems.jsonl")


@pytest.fixture(scope="module")
def model(tmp_path_factory, problems):
    return train_tiny_reasoner(tmp_path_factory.mktemp("tiny"), [p["question"] for p in problems])


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    with vllm_server(model, tmp_path_factory.mktemp("log") / "vllm.log") as url:
        yield url


@pytest.fixture(scope="module")
def tok(model):
    from or_common.tokens import load_tokenizer

    return load_tokenizer(str(model), light=True)


class Seen:
    """What the engine reports for each request: the prompt ids it was sent (the server's
    `prompt_token_ids`, the in-process engine's RequestOutput) and the ids it generated."""

    def __init__(self, monkeypatch, engine_cls):
        self.calls: list[tuple[list[int], list[int], str]] = []
        self.settings: set[tuple] = set()  # an in-process engine's: (chunked prefill, eager)
        real = engine_cls.complete

        async def complete(engine, request, **kw):
            config = getattr(getattr(engine, "engine", None), "vllm_config", None)
            if config is not None:
                self.settings.add(
                    (
                        config.scheduler_config.enable_chunked_prefill,
                        config.model_config.enforce_eager,
                    )
                )
            comp = await real(engine, request, **kw)
            self.calls.append((list(comp.prompt_ids or []), list(comp.ids or []), comp.finish))
            return comp

        monkeypatch.setattr(engine_cls, "complete", complete)


def gen(*args: str, problems: list[dict], n: int = 1) -> list[dict]:
    from or_gen.cli import main

    stdin = "".join(json.dumps(p) + "\n" for p in problems)
    result = CliRunner().invoke(main, [*args, "--n", str(n), "-q"], input=stdin)
    assert result.exit_code == 0, result.stderr
    return read_jsonl(result.stdout)


def served(url: str, model) -> list[str]:
    return ["--model", "tiny", "--api-base", url, "--tokenizer", str(model)]


def test_or_gen_against_vllm_serve_is_token_exact(server, model, tok, problems, monkeypatch):
    from or_common.tokens import encode_record, executor_ids, prompt_ids
    from or_gen.openai_engine import OpenAIEngine

    seen = Seen(monkeypatch, OpenAIEngine)
    out = gen(*served(server, model), "--max-tokens", "300", problems=problems[:3], n=2)
    assert len(out) == 6 and len(seen.calls) == 12  # two rounds each: to the fence, then on
    for rec in out:
        g = rec["gen"]
        assert "error" not in g and g["token_ids"] == "engine"
        # stopped at the closing fence, the block ran in the sandbox, generation resumed after
        # the output block; the end of turn inside the answer's open ```text fence ended it
        assert [s["role"] for s in rec["flow"]] == ["reasoner", "executor", "reasoner"]
        assert [s["text"] for s in rec["flow"]] == [BLOCK, OUTPUT, ANSWER]
        assert rec["flow"][1]["status"] == "ok"
        assert (g["finish"], g["executions"], g["rounds"]) == ("stop", 1, 2)
    by_prompt = {tuple(c[0]): c for c in seen.calls}
    for rec in out:
        start = prompt_ids(tok, rec["messages"])
        p1, ids1, finish1 = by_prompt[tuple(start)]
        assert finish1 == "stop" and tok.decode(ids1).endswith("\n```\n")
        # the second prompt is the first, the ids verbatim, the output block's ids
        after = start + ids1 + executor_ids(tok, OUTPUT)
        p2, ids2, finish2 = by_prompt[tuple(after)]
        assert finish2 == "stop" and ids2[-1] == tok.convert_tokens_to_ids("<|im_end|>")
        enc = encode_record(tok, rec)
        assert enc.input_ids == p2 + ids2  # what the engine saw and produced, token for token
        assert rec["flow"][0]["ids"] == ids1 and rec["flow"][2]["ids"] == ids2[:-1]
        assert (
            enc.response_tokens == rec["gen"]["completion_tokens"] + rec["gen"]["executor_tokens"]
        )


def test_a_length_finish_keeps_every_generated_id(server, model, tok, problems, monkeypatch):
    from or_common.tokens import encode_record
    from or_gen.openai_engine import OpenAIEngine

    seen = Seen(monkeypatch, OpenAIEngine)
    (rec,) = gen(*served(server, model), "--max-tokens", "7", problems=problems[:1])
    ((sent, ids, finish),) = seen.calls
    assert finish == "length" and len(ids) == 7
    assert rec["gen"]["finish"] == "length" and rec["gen"]["completion_tokens"] == 7
    assert encode_record(tok, rec).input_ids == sent + ids


def test_greedy_is_the_same_through_the_server_and_in_process(
    server, model, tok, problems, monkeypatch
):
    from or_common.tokens import encode_record
    from or_gen.local_engines import VLLMEngine

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    greedy = ["--temperature", "0", "--max-tokens", "300"]
    remote = gen(*served(server, model), *greedy, problems=problems[3:5])
    seen = Seen(monkeypatch, VLLMEngine)
    local = gen(
        "--backend", "vllm", "--model", str(model), "--max-model-len", "4096", *greedy,
        problems=problems[3:5],
    )  # fmt: skip
    assert len(local) == len(remote) == 2 and len(seen.calls) == 4
    # or-gen gave vLLM's CPU build its settings itself (per-request seeds stay safe)
    assert seen.settings == {(False, True)}

    def flow(rec):  # the flow without execution times
        return [{k: v for k, v in s.items() if k != "seconds"} for s in rec["flow"]]

    for a, b in zip(sorted(remote, key=str), sorted(local, key=str), strict=True):
        assert flow(a) == flow(b)  # the same text and the same engine ids
        assert b["gen"]["backend"] == "vllm" and "error" not in b["gen"]
        assert encode_record(tok, a).input_ids == encode_record(tok, b).input_ids
    by_prompt = {tuple(c[0]): c for c in seen.calls}
    for rec in local:  # in-process, too: the record is what the engine saw and produced
        enc = encode_record(tok, rec)
        finals = [c for p, c in by_prompt.items() if enc.input_ids[: len(p)] == list(p)]
        p, ids, _ = max(finals, key=lambda c: len(c[0]))
        assert enc.input_ids == p + ids


def test_or_intervene_resumes_from_the_exact_cut(server, model, tok, problems, monkeypatch):
    """A trajectory whose answer has units in the box: the rules Intervener cuts right before
    the box, hints, and the Reasoner continues on the real server from that exact point."""
    from or_common.tokens import encode, encode_record
    from or_gen.openai_engine import OpenAIEngine
    from or_intervene.cli import main

    (rec,) = gen(*served(server, model), "--max-tokens", "300", problems=problems[:1])
    original = encode_record(tok, rec).input_ids  # the engine's ids, as generated
    rec["flow"][2]["text"] = rec["flow"][2]["text"].replace("\\boxed{145}", "\\boxed{145 dollars}")
    seen = Seen(monkeypatch, OpenAIEngine)
    args = ["--intervener", "rules", *served(server, model), "--max-tokens", "300"]
    args += ["--max-interventions", "1", "-q"]
    result = CliRunner().invoke(main, args, input=json.dumps(rec) + "\n")
    assert result.exit_code == 0, result.stderr
    (out,) = read_jsonl(result.stdout)
    (round_,) = out["calm"]["rounds"]
    assert round_["trigger"] == 7  # units in the box
    sent, ids, _ = seen.calls[0]
    for (p, i, _), (q, _, _) in zip(seen.calls, seen.calls[1:], strict=False):
        assert q[: len(p) + len(i)] == p + i  # each round continues the last one verbatim
    flow = out["flow"]
    hint = next(i for i, s in enumerate(flow) if s["role"] == "intervener")
    before = encode(tok, rec["messages"], flow[:hint], None).input_ids
    # the resumed request: the original sequence up to the cut, the engine's ids verbatim
    # (the cut falls at a token boundary, right before the box), then the hint's ids
    assert len(before) > len(original) - 20 and before == original[: len(before)]
    assert sent == encode(tok, rec["messages"], flow[: hint + 1], None).input_ids
    last, last_ids, finish = seen.calls[-1]
    assert finish == "stop" and out["calm"]["final"]["finish"] == "stop"
    assert encode_record(tok, out).input_ids == last + last_ids  # the resumed record, exact too


# -- or-grpo against the real server: the agent loop, then one GRPO update on CPU ----------------

GROUPS, SAMPLES, HOT = 2, 4, 1.2  # hot enough that some samples break: rewards differ


@pytest.fixture(scope="module")
def rollouts(server, model, problems):
    """SAMPLES trajectories for each of GROUPS problems from verl's agent loop (our
    CodeInThinkingAgentLoop, the real sandbox) against the real server through `ServedModel`."""
    import asyncio

    from helpers import compose_verl_config, make_loop
    from or_common.reasoner import REASONER_PROMPT, build_messages
    from or_common.tokens import load_tokenizer
    from or_grpo.served import ServedModel

    tok = load_tokenizer(str(model))
    verl_config = compose_verl_config()

    async def run():
        manager = ServedModel(server, "tiny")
        loop = make_loop(verl_config, tok, manager, "local")
        jobs, meta = [], []
        for g, problem in enumerate(problems[:GROUPS]):
            raw = build_messages(problem["question"], REASONER_PROMPT, 4)
            row = {
                "raw_prompt": raw,
                "reward_model": {"ground_truth": "145"},
                "data_source": "nl4opt",
                "extra_info": {"id": problem["id"], "split": "train"},
            }
            for s in range(SAMPLES):
                params = {"temperature": HOT, "top_p": 1.0, "top_k": -1, "logprobs": True}
                jobs.append(loop.run({**params, "seed": 100 * g + s}, **row))
                meta.append((g, raw))
        outs = await asyncio.gather(*jobs)
        await manager.aclose()
        return outs, meta, manager.requests

    outs, meta, requests = asyncio.run(run())
    return tok, verl_config, outs, meta, requests


def test_agent_loop_against_vllm_serve(rollouts):
    from or_common.tokens import executor_ids

    tok, _, outs, _, requests = rollouts
    assert requests >= len(outs)
    ran = [o for o in outs if o.extra_fields["executions"]]
    assert ran, "no rollout ran its block"
    for out in outs:
        n = len(out.response_ids)
        assert len(out.response_mask) == n == len(out.response_logprobs) and n <= 400
        masked = [t for t, m in zip(out.response_ids, out.response_mask, strict=True) if not m]
        texts = out.extra_fields["executor_texts"]
        assert masked == [t for x in texts for t in executor_ids(tok, x)][: len(masked)]
        for m, lp in zip(out.response_mask, out.response_logprobs, strict=True):
            assert (lp == 0.0) if m == 0 else (lp <= 0.0)
    # hot samples may break their code; those that wrote the learnt block got its real output
    good = [o for o in ran if BLOCK in tok.decode(o.response_ids)]
    assert good and all(o.extra_fields["executor_texts"][0] == OUTPUT for o in good)
    assert all(o.extra_fields["executor_statuses"][0] == "ok" for o in good)


def test_one_grpo_update_on_cpu(rollouts, model):
    """verl's padded batch, verl's GRPO advantage and policy loss, one optimizer step."""
    import asyncio

    import numpy as np
    import torch
    from or_grpo.reward import compute_score
    from transformers import AutoModelForCausalLM
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.trainer.ppo import core_algos
    from verl.utils.config import omega_conf_to_dataclass

    tok, verl_config, outs, meta, _ = rollouts
    worker = object.__new__(AgentLoopWorker)  # its batch assembly, without Ray (as test_grpo)
    worker.config, worker.tokenizer, worker.processor = verl_config, tok, None
    worker.rollout_config = omega_conf_to_dataclass(verl_config.actor_rollout_ref.rollout)
    worker.reward_loop_worker_handles, worker.distillation_enabled = None, False
    worker.mm_processor_kwargs = {}
    padded = [
        asyncio.run(worker._agent_loop_postprocess(o, False, raw_prompt=raw))
        for o, (_, raw) in zip(outs, meta, strict=True)
    ]
    batch = worker._postprocess(padded).batch
    responses, mask = batch["responses"], batch["response_mask"].float()
    scores = [
        compute_score("nl4opt", tok.decode(o.response_ids, skip_special_tokens=True), "145",
                      o.extra_fields)["score"] for o in outs
    ]  # fmt: skip
    rewards = torch.zeros_like(mask)
    for i, o in enumerate(outs):
        rewards[i, len(o.response_ids) - 1] = scores[i]
    index = np.array([g for g, _ in meta])
    advantages, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, index)
    by_group = [[scores[i] for i in range(len(outs)) if index[i] == g] for g in range(GROUPS)]
    assert any(len(set(s)) > 1 for s in by_group), f"no group with differing rewards: {by_group}"
    for i in range(len(outs)):  # per group: (score - group mean) / (group std + eps)
        group = torch.tensor(by_group[index[i]])
        want = (scores[i] - group.mean()) / (group.std() + 1e-6)
        assert advantages[i][mask[i] > 0] == pytest.approx([want.item()] * int(mask[i].sum()))

    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)

    # verl pads to 3000 + 400 positions: the columns that are padding in every row are left
    # out, and the 152k-wide logits are computed only where responses are
    width = max(len(o.response_ids) for o in outs)
    responses, mask, advantages = responses[:, :width], mask[:, :width], advantages[:, :width]
    first = int(batch["attention_mask"].any(0).nonzero()[0])
    start = batch["prompts"].shape[1] - 1 - first
    cols = slice(first, start + first + width + 1)

    def log_probs() -> torch.Tensor:
        hidden = policy.model(
            input_ids=batch["input_ids"][:, cols],
            attention_mask=batch["attention_mask"][:, cols],
            position_ids=batch["position_ids"][:, cols],
        ).last_hidden_state
        logits = policy.lm_head(hidden[:, start : start + width])
        return torch.log_softmax(logits, -1).gather(-1, responses.unsqueeze(-1)).squeeze(-1)

    log_prob = log_probs()
    old = batch["rollout_log_probs"][:, :width]
    # the rollout/training mismatch: vLLM's log probs against the model's own, same weights
    gap = ((log_prob.detach() - old).abs() * mask).max().item()
    assert gap < 1e-4, f"vLLM's log probs differ from the model's by {gap}"  # 5e-6 measured
    log_prob.retain_grad()
    actor = omega_conf_to_dataclass(verl_config.actor_rollout_ref.actor)
    loss, _ = core_algos.compute_policy_loss_vanilla(
        old, log_prob, advantages, mask, "token-mean", actor
    )
    loss.backward()
    assert torch.all(log_prob.grad[mask == 0] == 0)  # executor output and padding: no gradient
    assert torch.any(log_prob.grad[(mask > 0) & (advantages != 0)] != 0)
    torch.optim.AdamW(policy.parameters(), lr=1e-3).step()
    with torch.no_grad():
        moved = ((log_probs() - log_prob.detach()) * advantages * mask).sum().item()
    assert moved > 0  # the step raised the log probs of the better-than-average samples
