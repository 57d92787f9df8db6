"""The Intervener's reference settings (SPEC §2): or-intervene's flags, `ModelIntervener` and
`calm_record` take their defaults from here (the Reasoner's are `or_common.reasoner.INTERVENER_DEFAULTS`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IntervenerDefaults:
    temperature: float = 1.0
    top_p: float = 0.95
    #: re-asks for a malformed answer or a target not found
    reask: int = 2
    #: interventions per trajectory before the loop gives up (verdict `limit`)
    max_interventions: int = 5


INTERVENER_DEFAULTS = IntervenerDefaults()
