"""Runs in the pool's process: its handle of one warm sandbox parent (the process it starts with
`python -m or_exec.sandbox.parent_main`, its socket, the jobs in flight on it)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson

from .. import solvers
from ..limits import ExecResult
from .cgroups import remove_tree
from .wire import HEADER

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: Variables passed from the caller's environment (CPU quirks the BLAS needs; nothing secret).
PASSED_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LANG", "LC_ALL", "TZ")


def job_env() -> dict[str, str]:
    """The whole environment a job (and its parent) sees: nothing of the caller's secrets."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    env.update({k: "1" for k in THREAD_VARS})  # forking a process with BLAS threads is unsafe
    env.update({k: os.environ[k] for k in PASSED_VARS if k in os.environ})
    env.update(solvers.licence_binds()[1])  # OR_EXEC_PASS_ENV: e.g. GRB_LICENSE_FILE
    return env


class ParentDied(RuntimeError):
    """The sandbox parent running a job died (not the job's doing): the job is run again."""


class ParentHandle:
    """The pool's handle of one warm sandbox parent process and the jobs in flight on it."""

    def __init__(
        self, tier: str, modules: Sequence[str], disk_mb: int, job_namespaces: bool = True
    ):
        self.tier = tier
        self.modules = modules
        self.disk_mb = disk_mb
        self.job_namespaces = job_namespaces
        self.proc: subprocess.Popen | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self.slots: dict[int, int] = {}  # job id -> slot
        self.ready: asyncio.Future | None = None
        self.info: dict[str, Any] = {}
        self.reader_task: asyncio.Task | None = None
        self.on_death: Any = None

    async def start(self) -> dict[str, Any]:
        if self.ready is None:
            self.ready = asyncio.get_running_loop().create_future()
            # a run that ends before anyone awaited the start must not print "Future exception
            # was never retrieved": whoever awaits it still gets the exception
            self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
            try:
                await self._spawn()
            except BaseException as exc:
                self.ready.set_exception(exc)
                fut, self.ready = self.ready, None
                await fut
        assert self.ready is not None  # set above, or the failed start raised
        return await asyncio.shield(self.ready)

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        python, note = solvers.installed()
        if python is not None:  # jobs run in the solver environment, with or_exec alone added
            exe, path = str(python), solvers.package_dir()
        else:
            # the directory that holds the or_exec package (this file is or_exec/sandbox/...)
            here = os.path.abspath(__file__)
            exe, path = sys.executable, os.path.dirname(os.path.dirname(os.path.dirname(here)))
        env = {**job_env(), "PYTHONPATH": path}
        binds = solvers.licence_binds()[0]
        # -P and cwd "/": the caller's working directory is not put on the parent's sys.path,
        # so it is not exposed to jobs either.
        self.proc = subprocess.Popen(
            [
                exe,
                "-P",
                "-m",
                "or_exec.sandbox.parent_main",
                "--fd",
                str(theirs.fileno()),
                "--tier",
                self.tier,
                "--modules",
                ",".join(self.modules),
                "--disk-mb",
                str(self.disk_mb),
                *([] if self.job_namespaces else ["--no-job-namespaces"]),
                "--solvers",
                note,
                *(["--bind", ":".join(binds)] if binds else []),
            ],
            env=env,
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            cwd="/",
        )
        theirs.close()
        reader, self.writer = await asyncio.open_unix_connection(sock=ours)
        self.reader_task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(4)
                message = orjson.loads(await reader.readexactly(HEADER.unpack(header)[0]))
                if message.get("ready"):
                    self.info = message
                    if self.ready is not None and not self.ready.done():
                        self.ready.set_result(message)
                    continue
                fut = self.pending.pop(message["job"], None)
                self.slots.pop(message["job"], None)
                if fut is not None and not fut.done():
                    fut.set_result(ExecResult.from_dict(message))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        self._died()

    def _died(self) -> None:
        """The parent is gone: fail what was in flight and let the next job respawn it."""
        code = self.proc.poll() if self.proc else None
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(
                RuntimeError(f"sandbox parent for tier {self.tier!r} failed to start (exit {code})")
            )
        dirty = set(self.slots.values())
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ParentDied(f"the sandbox parent of tier {self.tier!r} died"))
        self.pending.clear()
        self.slots.clear()
        self.ready = None
        self.writer = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        self.proc = None
        self._remove_cgroups()
        if self.on_death is not None:
            self.on_death(self.tier, dirty)

    async def submit(self, job_id: int, slot: int, message: dict[str, Any]) -> ExecResult:
        await self.start()
        assert self.writer is not None
        fut = asyncio.get_running_loop().create_future()
        self.pending[job_id] = fut
        self.slots[job_id] = slot
        data = orjson.dumps(message)
        self.writer.write(HEADER.pack(len(data)) + data)
        await self.writer.drain()
        return await asyncio.shield(fut)  # a cancelled caller leaves it for `cancel`

    def cancel(self, job_id: int) -> asyncio.Future | None:
        """Ask the parent to kill a job whose caller went away; the future of its result
        (None if it is already over)."""
        fut = self.pending.get(job_id)
        if fut is None or fut.done() or self.writer is None:
            return None
        data = orjson.dumps({"op": "cancel", "job": job_id})
        self.writer.write(HEADER.pack(len(data)) + data)
        return fut

    def _remove_cgroups(self) -> None:
        """The ended parent's cgroups (its jobs' processes die with it, within moments)."""
        paths = list((self.info or {}).get("cgroups") or ())
        if paths:
            threading.Thread(target=_remove_cgroups, args=(paths,), daemon=True).start()

    def kill(self) -> None:
        """End a parent that stopped answering; its reader then notices the death."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            paths = list((self.info or {}).get("cgroups") or ())
            if paths:  # at the end of a run: wait for it (a daemon thread would die with us)
                await asyncio.to_thread(_remove_cgroups, paths)
        if self.reader_task is not None:
            await asyncio.gather(self.reader_task, return_exceptions=True)


def _remove_cgroups(paths: list[str], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    for path in paths:
        while True:
            remove_tree(path)
            if not os.path.exists(path) or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
