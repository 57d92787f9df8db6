"""What a forked job child does: isolate itself, run the code, report, exit."""

from __future__ import annotations

import os
import signal
import sys
import time
import types
from dataclasses import dataclass
from typing import Any

import orjson

from . import linux, rootfs, seccomp


@dataclass(frozen=True)
class JobPlace:
    """Where and how a job runs (decided by the parent before the fork)."""

    jobfs: str  # the job's own file system: tmp/ (its /tmp) and shm/ (its /dev/shm)
    name: str  # its working directory, tmp/<name>
    uid: int | None  # the slot's uid (None when the parent is not root)
    holder_pidfd: int  # namespaces to join (-1: none)
    own_root: bool  # the parent is in the minimal root: the job gets its own mount namespace
    use_seccomp: bool
    parent_pid: int  # the template's pid (the job's parent)


def read_spec(jobfs: str) -> dict[str, Any]:
    """The job's settings (limits, env, prelude), written by the sandbox parent into the job's
    own directory, where only root can read it: the template that forks jobs never holds them.
    Read (and removed) by the job's child while it is still root."""
    path = os.path.join(jobfs, "job.json")
    with open(path, "rb") as fh:
        spec = orjson.loads(fh.read())
    os.unlink(path)
    return spec


def run_child(place: JobPlace, fds: tuple[int, int, int]) -> None:
    """Runs in the child the template forked: isolate, report setup, run the code, exit. Never
    returns. Its code and settings come from its own directory, never from the template.

    The setup report goes to the parent on `info_w`, which is closed before any code of the
    job (its prelude included) runs: the job has no channel to the parent but its output."""
    out_w, err_w, info_w = fds
    code = 1
    t0 = time.perf_counter()
    try:
        import resource

        os.setsid()
        job = read_spec(place.jobfs)
        limits = job["limits"]
        stdin = os.path.join(place.jobfs, "stdin")  # the client's input, else /dev/null
        given = os.path.exists(stdin)
        os.dup2(os.open(stdin if given else os.devnull, os.O_RDONLY), 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        if place.holder_pidfd >= 0:
            linux.setns(
                place.holder_pidfd, linux.CLONE_NEWNET | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS
            )
        if place.own_root:
            rootfs.enter_job_root(place.jobfs, limits)
            tmp = "/tmp"
        else:
            tmp = os.path.join(place.jobfs, "tmp")
        os.closerange(3, info_w)
        os.closerange(info_w + 1, 65536)
        os.set_inheritable(info_w, False)
        cwd = os.path.join(tmp, place.name)
        os.chdir(cwd)
        os.umask(0o022 if place.own_root else 0o077)
        with open("main.py", "rb") as fh:
            source = fh.read().decode("utf-8", "surrogateescape")
        try:  # the host's OOM killer takes a job before anything else
            with open("/proc/self/oom_score_adj", "w") as fh:
                fh.write("1000")
        except OSError:
            pass
        mem = int(limits["memory_mb"]) << 20
        cpu = int(limits.get("cpu_seconds") or (float(limits["timeout"]) + 1))
        # CPU: SIGXCPU at the soft limit, SIGKILL a second later (the parent reads rusage).
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        for res, value in (
            # with a memory cgroup counting the real pages, the per-process address-space
            # limit only stops single huge allocations early (a MemoryError rather than an OOM
            # kill): the parent's own mappings (the preloaded libraries) are not charged to it
            (resource.RLIMIT_AS, mem + int(job.get("address_space_extra") or 0)),
            (resource.RLIMIT_FSIZE, int(limits["file_mb"]) << 20),
            (resource.RLIMIT_NOFILE, int(limits["open_files"])),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(res, (value, value))
        if place.uid is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (int(limits["processes"]),) * 2)
            os.setgroups([])
            os.setresgid(place.uid, place.uid, place.uid)
            os.setresuid(place.uid, place.uid, place.uid)
            _fresh_keyrings()
        # The kernel clears the parent-death signal on a uid change: set it afterwards.
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        # In its own pid namespace the job's parent is outside: getppid() is 0 while it lives.
        if os.getppid() != (0 if place.holder_pidfd >= 0 else place.parent_pid):
            os._exit(137)
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        if place.use_seccomp:
            seccomp.install()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        os.environ.clear()
        os.environ.update(job["env"])
        os.environ.update({"HOME": cwd, "PWD": cwd})
        if not place.own_root:
            os.environ.update({"TMPDIR": tmp, "TMP": tmp, "TEMP": tmp})
        forget_parent_state()
        sys.stdin = open(0, encoding="utf-8", closefd=False)
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.argv = ["main.py"]
        sys.path.insert(0, cwd)
        # A real __main__ module, as `python main.py` has: pickle (multiprocessing,
        # concurrent.futures) finds the job's functions by `__main__.<name>`.
        main = types.ModuleType("__main__")
        main.__file__ = os.path.join(cwd, "main.py")
        main.__builtins__ = __builtins__  # type: ignore[attr-defined]  # typeshed's ModuleType lacks the attribute every module has
        sys.modules["__main__"] = main
        namespace: dict[str, Any] = main.__dict__
        _report(info_w, {"setup": time.perf_counter() - t0})
    except BaseException as exc:  # the sandbox setup itself failed
        try:
            os.write(2, f"sandbox setup failed: {exc!r}\n".encode())
        except OSError:
            pass
        _report(info_w, {"setup_error": repr(exc)})
        os._exit(70)
    try:
        for prelude in job.get("prelude") or ():
            _run_quietly(prelude, namespace)
        exec(compile(source, "main.py", "exec"), namespace)  # noqa: S102 - this is the sandbox
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:
        _print_exception()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        os._exit(code)


def _report(info_w: int, record: dict[str, Any]) -> None:
    try:
        os.write(info_w, orjson.dumps(record))
    except BaseException:
        pass
    try:
        os.close(info_w)
    except OSError:
        pass


def _fresh_keyrings() -> None:
    """Leave the parent's session keyring and empty the uid's own keyrings (which outlive
    processes): nothing a previous job of this slot stored is left. Where seccomp is active,
    the job cannot reach the keyrings at all."""
    for op, arg in (
        (linux.KEYCTL_JOIN_SESSION_KEYRING, 0),
        (linux.KEYCTL_CLEAR, linux.KEY_SPEC_USER_KEYRING),
        (linux.KEYCTL_CLEAR, linux.KEY_SPEC_USER_SESSION_KEYRING),
    ):
        try:
            linux.keyctl(op, arg)
        except OSError:
            pass


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
        sys.stderr.write("".join(traceback.format_exception(type(exc), exc, tb)))  # type: ignore[arg-type]  # typeshed refuses type(None), which traceback takes
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
