"""The Reasoner prompt (versioned); the token layer (or_common.tokens) renders it with the
model's chat template."""

from __future__ import annotations

from pathlib import Path

PROMPT_VERSION = "reasoner-v1"

REASONER_PROMPT = """You are an expert in operations research and optimization modeling. Solve the problem below.

Work like this:
1. Think the problem through before writing code: name the decision variables, the objective and every constraint, including bounds and which variables must be integers.
2. Write one complete, self-contained Python script in a ```python block that builds and solves the model, using PuLP (numpy, scipy and sympy are available too). Print the solver status, the optimal objective value and the key variable values.
3. When you close the block, the script runs and its output appears right after it in an ```output block. Read the output, check that it makes sense for the problem, and correct the model or the code if it does not. You can run code at most {max_executions} times; each script runs on its own, so repeat any definitions you need.
4. End with the optimal objective value as a single number in \\boxed{}, with no units or words. If the problem has no feasible solution, write \\boxed{infeasible}.

Problem:
{question}"""


def load_prompt(path: str | None) -> tuple[str, str]:
    """(template, version): ours, or a user's file (its version is `custom:<file name>`)."""
    if path is None:
        return REASONER_PROMPT, PROMPT_VERSION
    text = Path(path).read_text()
    if "{question}" not in text:
        raise ValueError(f"{path}: a prompt template needs a {{question}} placeholder")
    return text, f"custom:{Path(path).name}"


def build_messages(question: str, template: str, max_executions: int) -> list[dict[str, str]]:
    """The chat messages for one problem (placeholders filled literally, no str.format)."""
    content = template.replace("{max_executions}", str(max_executions)).replace(
        "{question}", question
    )
    return [{"role": "user", "content": content}]
