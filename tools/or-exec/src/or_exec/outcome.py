"""A job's status, derived only from what the sandbox parent measured itself: how the process
ended (wait status), its CPU time (rusage), its wall time, why the parent killed it, and what it
printed. Nothing the job could write on a private channel after its code started counts."""

from __future__ import annotations

import base64
import os
import signal
from typing import Any

import orjson

SETUP_RECORD_MAX = 4096


def parse_setup_record(data: bytes) -> dict[str, Any]:
    """The child's report, written before any user code ran: {"setup": seconds} or
    {"setup_error": text}. Anything malformed or oversized counts as no report."""
    if not data or len(data) > SETUP_RECORD_MAX:
        return {}
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(record, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(record.get("setup"), (int, float)) and not isinstance(record["setup"], bool):
        out["setup"] = float(record["setup"])
    if isinstance(record.get("setup_error"), str):
        out["setup_error"] = record["setup_error"][:300]
    return out


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def died_of_memory_error(stderr: str) -> bool:
    lines = [line for line in stderr.rstrip().splitlines() if line.strip()]
    return bool(lines) and (lines[-1] == "MemoryError" or lines[-1].startswith("MemoryError:"))


def derive_status(
    *,
    wait_status: int | None,
    cpu_seconds: float,
    wall_seconds: float,
    limits: dict[str, Any],
    reason: str | None,
    setup: dict[str, Any],
    stderr: str,
    oom_killed: bool = False,
) -> tuple[str, int | None, str | None]:
    """(status, exit code, message) of a finished job."""
    exit_code = None if wait_status is None else os.waitstatus_to_exitcode(wait_status)
    timeout = float(limits["timeout"])
    cpu_limit = float(limits.get("cpu_seconds") or int(timeout) + 1)
    if reason == "cancelled":
        return "killed", exit_code, "cancelled: the client went away"
    if reason == "flood":
        return "killed", exit_code, f"output exceeded {limits['flood_bytes']} bytes"
    # The parent kills at the deadline; the job's namespace holder kills at the deadline plus
    # a grace, even if the parent is stalled. A job that ended on its own was not killed for
    # time, however late we saw its end (sandbox overhead is not the program's time).
    if reason == "timeout" or (exit_code == -signal.SIGKILL and wall_seconds >= timeout):
        return "timeout", exit_code, None
    if oom_killed:  # the kernel ended a process of the job's own memory cgroup
        limit = limits.get("memory_mb")
        return "memory", exit_code, f"the job's processes went over its {limit} MiB together"
    # rusage is sampled from scheduler ticks and reads up to ~10 % low: a death by the CPU
    # limit's signals close to the limit is the limit's; a SIGXCPU the job sent itself early
    # is not (it is reported as the signal it is).
    if (
        exit_code is not None
        and -exit_code in (signal.SIGXCPU, signal.SIGKILL)
        and cpu_seconds >= 0.85 * cpu_limit
    ):
        return "timeout", exit_code, f"CPU time limit of {cpu_limit:g} s reached"
    if "setup_error" in setup:
        return "killed", exit_code, "sandbox setup failed: " + setup["setup_error"]
    if exit_code is None:
        return "killed", None, "the job's end was not observed"
    if exit_code < 0:
        return "killed", exit_code, f"signal {_signal_name(-exit_code)}"
    if "setup" not in setup:
        return "killed", exit_code, "sandbox setup did not complete"
    if exit_code == 1 and died_of_memory_error(stderr):
        return "memory", exit_code, None
    return ("ok" if exit_code == 0 else "error"), exit_code, None


def result_message(job: Any, tier: str, oom_killed: bool, now: float) -> dict[str, Any]:
    """The result the parent sends for a finished job (jobspace.Job), status derived here."""
    ended = job.ended or now
    setup = parse_setup_record(bytes(job.info))
    stdout, t1 = job.out.text()
    stderr, t2 = job.err.text()
    status, exit_code, message = derive_status(
        wait_status=job.exit_status,
        cpu_seconds=job.cpu,
        wall_seconds=ended - job.started,
        limits=job.limits,
        reason=job.reason,
        setup=setup,
        stderr=stderr,
        oom_killed=oom_killed,
    )
    seconds = ended - job.started
    timings = {
        "fork": round(job.fork_seconds, 6),
        "setup": round(setup.get("setup", 0.0), 6),
        "program": round(max(0.0, seconds - setup.get("setup", 0.0)), 6),
        "teardown": round(now - ended, 6),
    }
    out = {
        "job": job.id,
        "status": status,
        "exit_code": exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "seconds": round(seconds, 6),
        "truncated": t1 or t2,
        "tier": tier,
        "timings": timings,
        "message": message,
    }
    if job.fetched is not None:  # base64, as the HTTP dialects carry files; None: not there
        out["files"] = {
            k: None if v is None else base64.b64encode(v).decode() for k, v in job.fetched.items()
        }
    return out
