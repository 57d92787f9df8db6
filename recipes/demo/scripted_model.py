"""A scripted stand-in for a Reasoner model, served as an OpenAI-compatible completions endpoint
on 127.0.0.1, so that `just demo` can run the whole pipeline offline.

It is NOT a model and nothing it writes is a result: it recognises the five bundled problems
that have an entry in `playbook.py` and writes the hand-written text and PuLP code found there,
reading the real solver output (run by or-exec) back from the prompt to write its answer. On
any other problem it says it cannot solve it. Its first attempts carry the flaws the CALM
Intervener looks for (solving by hand, a continuous model for a count, units in the box), so
the demo shows real cuts and hints; odd request seeds give a clean first attempt instead.

It speaks what or-gen sends to `vllm serve`: `/v1/completions` with a text or token-id prompt,
`stop` (the output ends at the first stop string, kept with `include_stop_str_in_output`),
`max_tokens` (counted with the real tokenizer), and `return_token_ids`.

    python recipes/demo/scripted_model.py --tokenizer TOKENIZER_DIR --port 0 --port-file PORT
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from playbook import PLAYBOOK  # noqa: E402

MODEL_NAME = "scripted-stand-in"
_OUTPUT = re.compile(r"```output\n(.*?)```\n", re.DOTALL)
_OBJECTIVE = re.compile(r"Objective:\s*(-?[\d.]+(?:e[+-]?\d+)?)")
FENCE = "```python\n"


def find_entry(question: str) -> dict[str, str] | None:
    return next((e for e in PLAYBOOK if e["match"].lower() in question.lower()), None)


def _number(value: str) -> str:
    x = float(value)
    return str(int(round(x))) if abs(x - round(x)) < 1e-6 else f"{x:g}"


def continuation(question: str, so_far: str, seed: int | None) -> str:
    """What the stand-in writes after `so_far` (the assistant text after the prompt)."""
    entry = find_entry(question)
    if entry is None:
        return (
            "This problem is not in the scripted stand-in's playbook, so it cannot write a "
            "model for it.\n</think>\n\nI could not solve this problem."
        )
    style = entry["style"]
    if seed is not None and seed % 2 == 1 and not so_far:
        style = "direct"  # a clean first attempt on odd seeds
    outputs = _OUTPUT.findall(so_far)
    hinted = "integers" in so_far or "let pulp solve it" in so_far
    if so_far.endswith(FENCE):  # a hint opened a code block: write the script
        code = entry.get("fixed_code", entry["code"]) if hinted else entry["code"]
        return code + "```\n"
    if not so_far:
        if style == "by_hand":
            return entry["plan"]
        if style == "direct":
            plan = entry.get("direct_plan", entry["plan"])
            return plan + FENCE + entry.get("fixed_code", entry["code"]) + "```\n"
        return entry["plan"] + FENCE + entry["code"] + "```\n"
    objective = _OBJECTIVE.findall(outputs[-1]) if outputs else []
    if not objective:
        return "The script did not print an objective.\n</think>\n\nI could not solve this problem."
    value = _number(objective[-1])
    if so_far.endswith("without units or words."):  # the format hint, after the thinking
        return f"\n\nThe optimal objective value is \\boxed{{{value}}}."
    sanity = (
        f"The solver reports an optimal objective of {value}. That is plausible: every "
        "constraint is satisfied by the printed values and the variables have the right kind."
    )
    if style == "units_in_box" and "boxed" not in so_far:
        return f"{sanity}\n</think>\n\nThe minimum total is \\boxed{{{value} support points}}."
    return f"{sanity}\n</think>\n\nThe optimal objective value is \\boxed{{{value}}}."


def split_prompt(prompt: str) -> tuple[str, str]:
    """(question, assistant text so far) from a prompt rendered by the Qwen3 chat template."""
    user = prompt.split("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]
    question = user.split("Problem:\n", 1)[-1]
    head = "<|im_start|>assistant\n<think>\n"
    so_far = prompt.split(head, 1)[1] if head in prompt else ""
    return question, so_far


def cut_at_stop(text: str, stops: list[str], include: bool) -> tuple[str, bool]:
    hits = [(text.find(s), s) for s in stops if s and text.find(s) >= 0]
    if not hits:
        return text, False
    at, stop = min(hits)
    return (text[: at + len(stop)] if include else text[:at]), True


class StandIn:
    def __init__(self, tokenizer_dir: str):
        from or_common.tokens import load_tokenizer

        self.tok = load_tokenizer(tokenizer_dir, light=True)  # the real tokenizer, without torch
        self.lock = threading.Lock()
        self.requests = 0

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], list | str):
            prompt = prompt[0]
        with self.lock:
            self.requests += 1
            prompt_ids = (
                list(prompt)
                if isinstance(prompt, list)
                else self.tok.encode(prompt, add_special_tokens=False)
            )
            prompt_text = (
                self.tok.decode(prompt, skip_special_tokens=False)
                if isinstance(prompt, list)
                else prompt
            )
        question, so_far = split_prompt(prompt_text)
        text = continuation(question, so_far, body.get("seed"))
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        text, stopped = cut_at_stop(text, stops, bool(body.get("include_stop_str_in_output")))
        with self.lock:
            ids = self.tok.encode(text, add_special_tokens=False)
        finish = "stop"
        limit = int(body.get("max_tokens") or 16)
        if len(ids) > limit:
            ids = ids[:limit]
            with self.lock:
                text = self.tok.decode(ids, skip_special_tokens=False)
            finish = "length"
        elif not stopped:
            ids = ids + [self.tok.eos_token_id]  # the turn ends: vLLM reports the eos id too
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish}
        if body.get("return_token_ids"):
            choice["token_ids"] = ids
            choice["prompt_token_ids"] = prompt_ids
        return {
            "id": f"cmpl-{self.requests}",
            "object": "text_completion",
            "model": body.get("model", MODEL_NAME),
            "choices": [choice],
            "usage": {
                "prompt_tokens": len(prompt_ids),
                "completion_tokens": len(ids),
                "total_tokens": len(prompt_ids) + len(ids),
            },
        }


def make_handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet: the demo's logs are the tools'
            return

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": MODEL_NAME, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as exc:
                self._send(400, {"error": {"message": f"bad JSON: {exc}"}})
                return
            if not self.path.rstrip("/").endswith("/completions") or "chat" in self.path:
                self._send(404, {"error": {"message": "the stand-in serves /v1/completions only"}})
                return
            self._send(200, stand_in.complete(body))

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="write the bound port here once serving")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(StandIn(args.tokenizer)))
    if args.port_file:
        Path(args.port_file).write_text(str(server.server_address[1]))
    print(f"scripted stand-in on http://127.0.0.1:{server.server_address[1]}/v1", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
