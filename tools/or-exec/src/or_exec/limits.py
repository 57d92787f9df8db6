"""Limits of one execution and the result it produces."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


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

    def capped(self, request: Any) -> Limits:
        """These limits lowered by a client's `request` (a dict of limit fields): a server's own
        limits are ceilings, so a client may ask for less, never for more. Raises ValueError
        for anything that is not a finite, positive number of the right kind."""
        if request is None:
            return self
        if not isinstance(request, dict):
            raise ValueError("limits must be an object")
        unknown = set(request) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown limits: {sorted(unknown)}")
        values = self.to_dict()
        for name, value in request.items():
            if value is None:
                continue
            integral = name != "timeout"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"limit {name} must be a number, not {type(value).__name__}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"limit {name} must be a finite number above 0, not {value}")
            if integral and value != int(value):
                raise ValueError(f"limit {name} must be a whole number, not {value}")
            ceiling = values[name]
            if name == "cpu_seconds" and ceiling is None:
                ceiling = int(self.timeout) + 1
            value = int(value) if integral else float(value)
            values[name] = min(value, ceiling)
        return Limits(**values)


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
    files: dict[str, str | None] | None = None  # fetched files, base64 (None: not there)
    limits: dict[str, Any] | None = None  # what the job ran under (a server's answers say it)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExecResult:
        """The inverse of `to_dict`, which drops fields that are None (e.g. `exit_code` of a job
        whose parent died): missing optional fields come back as their defaults."""
        return cls(
            status=d["status"],
            exit_code=d.get("exit_code"),
            stdout=d.get("stdout") or "",
            stderr=d.get("stderr") or "",
            seconds=float(d.get("seconds") or 0.0),
            truncated=bool(d.get("truncated", False)),
            tier=d.get("tier"),
            timings=dict(d.get("timings") or {}),
            message=d.get("message"),
            files=d.get("files"),
            limits=d.get("limits"),
        )
