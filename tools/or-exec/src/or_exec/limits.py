"""Limits of one execution and the result it produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("ok", "error", "timeout", "memory", "killed", "skipped")


@dataclass(frozen=True)
class Limits:
    """Per-job limits. Defaults follow SPEC §5: 10 s wall clock, 4 GiB memory, 8 KiB output."""

    timeout: float = 10.0
    memory_mb: int = 4096
    cpu_seconds: int | None = None  # default: timeout + 1
    file_mb: int = 64
    processes: int = 64
    open_files: int = 256
    max_output: int = 8192  # bytes kept per stream (head + tail)
    flood_bytes: int = 64 << 20  # a job that prints more than this is killed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExecResult:
    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    truncated: bool = False
    tier: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExecResult:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})


def format_output(result: ExecResult) -> str:
    """The fenced ```output block the Reasoner sees for an execution (the protocol's format)."""
    from or_common.protocol import output_block

    return output_block(result)
