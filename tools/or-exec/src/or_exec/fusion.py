"""SandboxFusion's dialect (`POST /run_code`), which verl's sandbox reward and tool
(`verl.utils.reward_score.sandbox_fusion`) and many RL projects speak: requests are translated
into a Pool job and results back, field by field.

Request:  code, language ("python"), compile_timeout (no compile step here: accepted and
          ignored), run_timeout (s), memory_limit_MB, stdin, files {name: base64},
          fetch_files [names].
Response: status Success | Failed | SandboxError, message, compile_result (null),
          run_result {status Finished | TimeLimitExceeded | Error, execution_time,
          return_code, stdout, stderr}, executor_pod_name (null), files {name: base64},
          and, beyond SandboxFusion, `or_exec` {status, tier, limits}.
Statuses: ok -> Success/Finished; error -> Failed/Finished (its exit code); timeout ->
Failed/TimeLimitExceeded; memory, killed -> Failed/Error; a job the sandbox itself could not
run (its parent died on every attempt) -> SandboxError.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from .limits import ExecResult, Limits
from .sandbox.jobspace import relative_parts

FIELDS = (
    "code",
    "language",
    "compile_timeout",
    "run_timeout",
    "memory_limit_MB",
    "stdin",
    "files",
    "fetch_files",
)
LANGUAGES = ("python", "python3")


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be above 0, not {value}")
    return float(value)


def parse_request(body: Any, ceilings: Limits) -> dict[str, Any]:
    """A SandboxFusion request as Pool.run's keyword arguments (code, limits, stdin, files,
    fetch). Raises ValueError (-> 400) for anything malformed or not python."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(body) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; the fields are {list(FIELDS)}")
    code = body.get("code")
    if not isinstance(code, str):
        raise ValueError("code must be a string")
    language = body.get("language") or "python"
    if language not in LANGUAGES:
        raise ValueError(f"language {language!r} is not served here; only python")
    _number(body, "compile_timeout")
    asked: dict[str, Any] = {}
    run_timeout = _number(body, "run_timeout")
    if run_timeout is not None:
        asked["timeout"] = run_timeout
    memory = _number(body, "memory_limit_MB")
    if memory is not None:
        asked["memory_mb"] = max(1, int(memory))
    stdin = body.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise ValueError("stdin must be a string or null")
    files = body.get("files") or {}
    if not isinstance(files, dict):
        raise ValueError("files must be an object {name: base64}")
    decoded = {}
    for name, data in files.items():
        relative_parts(name)
        if not isinstance(data, str):
            raise ValueError(f"files[{name!r}] must be a base64 string")
        try:
            decoded[name] = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"files[{name!r}] is not valid base64") from None
    fetch = body.get("fetch_files") or []
    if not isinstance(fetch, list) or not all(isinstance(n, str) for n in fetch):
        raise ValueError("fetch_files must be a list of file names")
    for name in fetch:
        relative_parts(name)
    return {
        "code": code,
        "limits": ceilings.capped(asked),
        "stdin": stdin,
        "files": decoded,
        "fetch": fetch,
    }


def response(result: ExecResult, limits: Limits) -> dict[str, Any]:
    """A Pool result as SandboxFusion's response."""
    ours = {"status": result.status, "tier": result.tier, "limits": limits.to_dict()}
    if result.status == "killed" and "sandbox parent died" in (result.message or ""):
        return {
            "status": "SandboxError",
            "message": result.message,
            "compile_result": None,
            "run_result": None,
            "executor_pod_name": None,
            "files": {},
            "or_exec": ours,
        }
    run_status = {"ok": "Finished", "error": "Finished", "timeout": "TimeLimitExceeded"}.get(
        result.status, "Error"
    )
    files = {k: v for k, v in (result.files or {}).items() if v is not None}
    return {
        "status": "Success" if result.status == "ok" else "Failed",
        "message": result.message or "",
        "compile_result": None,
        "run_result": {
            "status": run_status,
            "execution_time": result.seconds,
            "return_code": result.exit_code,
            "stdout": result.stdout,
            "stderr": result.stderr,
        },
        "executor_pod_name": None,
        "files": files,
        "or_exec": ours,
    }
