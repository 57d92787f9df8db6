"""What a forked job child does: isolate itself, run the code, report, exit."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import orjson

from . import linux


def run_child(
    job: dict[str, Any], jobdir: str, fds: tuple[int, int, int], parent_pid: int, uid: int | None
) -> None:
    """Runs in the forked child: isolate, run the code, report, and exit. Never returns."""
    out_w, err_w, info_w = fds
    code = 1
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        import resource

        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        keep = {0, 1, 2, info_w}
        os.closerange(3, info_w)
        os.closerange(info_w + 1, 65536)
        os.set_inheritable(info_w, False)
        del keep
        os.chdir(jobdir)
        os.umask(0o077)
        limits = job["limits"]
        mem = int(limits["memory_mb"]) << 20
        cpu = int(limits.get("cpu_seconds") or (float(limits["timeout"]) + 1))
        # CPU: SIGXCPU at the soft limit (reported as a timeout), SIGKILL a second later.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        for res, value in (
            (resource.RLIMIT_AS, mem),
            (resource.RLIMIT_FSIZE, int(limits["file_mb"]) << 20),
            (resource.RLIMIT_NOFILE, int(limits["open_files"])),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(res, (value, value))
        if uid is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (int(limits["processes"]),) * 2)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        # The kernel clears the parent-death signal on a uid change: set it afterwards.
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(137)
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        os.environ.clear()
        os.environ.update(job["env"])
        os.environ.update(
            {"HOME": jobdir, "TMPDIR": jobdir, "TMP": jobdir, "TEMP": jobdir, "PWD": jobdir}
        )
        forget_parent_state()
        sys.stdin = open(0, encoding="utf-8", closefd=False)
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.argv = ["main.py"]
        sys.path.insert(0, jobdir)
        namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": __builtins__,
            "__file__": os.path.join(jobdir, "main.py"),
        }
        for prelude in job.get("prelude") or ():
            _run_quietly(prelude, namespace)
        info["setup"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            exec(compile(job["code"], "main.py", "exec"), namespace)  # noqa: S102 - this is the sandbox
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except MemoryError:
            info["memory"] = True
            _print_exception()
            code = 1
        except BaseException:
            _print_exception()
            code = 1
        info["program"] = time.perf_counter() - t1
    except BaseException as exc:  # the sandbox setup itself failed
        try:
            os.write(2, f"sandbox setup failed: {exc!r}\n".encode())
        except OSError:
            pass
        info["setup_error"] = repr(exc)
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        try:
            os.write(info_w, orjson.dumps(info))
        except BaseException:
            pass
        os._exit(code)


def forget_parent_state() -> None:
    """Undo what the warm parent cached before the fork, so that the job starts as a fresh
    `python prog.py` would: temp-dir choices (tempfile's and PuLP's default solver object, built
    at `import pulp` and pointing at the parent's temp dir), and random generator states."""
    import random
    import tempfile

    tempfile.tempdir = None
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    apis = sys.modules.get("pulp.apis")
    if apis is not None:
        # LpSolverDefault is one object shared by pulp, pulp.pulp, pulp.apis and the default
        # argument of LpProblem.setSolver: reset it in place rather than rebinding the names.
        solver = getattr(apis, "LpSolverDefault", None)
        reset = getattr(solver, "setTmpDir", None) or getattr(solver, "set_tmpDir", None)
        if reset is not None:
            reset()


def _exit_code(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    try:
        sys.stderr.write(f"{value}\n")
    except BaseException:
        pass
    return 1


def _print_exception() -> None:
    import traceback

    try:
        exc = sys.exc_info()[1]
        tb = (
            exc.__traceback__.tb_next if exc is not None and exc.__traceback__ is not None else None
        )
        sys.stderr.write("".join(traceback.format_exception(type(exc), exc, tb)))
    except BaseException:
        pass


def _run_quietly(code: str, namespace: dict[str, Any]) -> None:
    """Replay an earlier block (stateful mode) with its output discarded."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            exec(compile(code, "previous_block.py", "exec"), namespace)  # noqa: S102
        except BaseException:
            pass
