"""The Intervener prompt (versioned, our own words) and the tagged answer it asks for."""

from __future__ import annotations

from typing import Any

from or_common.flaws import TRIGGER_NAMES

PROMPT_VERSION = "intervener-v1"

TRIGGER_DEFINITIONS = {
    1: "After formulating the model, the solver solves it by hand in text instead of writing solver code.",
    2: "Several small, non-self-contained or repeated solver blocks instead of one complete script (for example a later block fails with NameError because blocks share no state).",
    3: "After the solver printed its results, the solver recomputes or re-solves them by hand.",
    4: "A correct solver output goes straight to the final answer without a brief check that it is plausible.",
    5: "The model is wrong: a misread statement, a missing or wrong constraint, continuous variables where integers are required, a wrong objective.",
    6: "The model is right but the code does not implement it (wrong sign, missing bound, wrong data, a solver status that is not Optimal ignored).",
    7: "The final answer is not a lone number in \\boxed{} (units, words, several boxes, or no box).",
}

INTERVENER_PROMPT = """You supervise a student who is learning optimization modeling. The student reasons in text and can run Python (PuLP, numpy, scipy, sympy) inside its reasoning: a ```python block is executed when it is closed and its ```output follows.

An expert works in a cycle: formulate the model (variables, objective, constraints), implement it as one complete script, run it, then reflect on the output (is it Optimal? plausible? consistent with the statement?) and debug if needed, and finally answer with the optimal objective value as a lone number in \\boxed{{}}.

Find the FIRST flaw in the student's trajectory below, using exactly one of these triggers:
{triggers}

If you find one, name the exact text where it begins and write a hint that will replace everything from that text on. The student then continues from your hint. Hint principles:
- Write in the student's own voice, in the first person, as its own reflection ("I should ...", "The model is complete; ...").
- Keep it short: one or two sentences that push one concrete next action. Do not give the answer or the full solution.
- For triggers 1 and 2, end the hint with an opened ```python fence on its own line, so the student writes the complete script next.
- For trigger 3: the solver already gave the optimum; redoing it by hand adds nothing. For trigger 4: a one-line plausibility reflection. For 5-7: a pointed fix in the domain.
{truth}
Answer in exactly this format, nothing else:
<action>REPLACE_AND_CONTINUE</action>
<trigger>the trigger number</trigger>
<analysis>one or two sentences on what is wrong</analysis>
<target>a short passage copied exactly from the trajectory where the flaw begins (not from an output block)</target>
<hint>the first-person hint</hint>

If the trajectory has no flaw, answer only:
<action>NO_INTERVENTION</action>

## Problem
{question}

## Student trajectory
{trajectory}"""


def render_intervener_prompt(record: dict[str, Any], trajectory: str) -> str:
    triggers = "\n".join(
        f"{n}. {TRIGGER_NAMES[n].capitalize()}: {TRIGGER_DEFINITIONS[n]}" for n in range(1, 8)
    )
    answer = record.get("answer")
    truth = (
        f"\nThe correct optimal objective value is {answer}. Use it to judge the modeling, but never reveal it in the hint.\n"
        if answer is not None
        else "\nThe correct answer is not known; judge the reasoning and code on their merits.\n"
    )
    return INTERVENER_PROMPT.format(
        triggers=triggers, truth=truth, question=record.get("question", ""), trajectory=trajectory
    )


REASK_NOTE = (
    "Your answer could not be used: {reason}. Answer again in the tag format only. "
    "The <target> must be copied character for character from the student's own text (not from an output block)."
)
