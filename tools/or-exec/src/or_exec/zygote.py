"""The warm sandbox parent (a "zygote"): started once per tier of preloaded modules, it forks
one child per job and watches it in a single-threaded event loop.

Run as `python -m or_exec.zygote` by the pool with a minimal environment and one end of a
socketpair on fd 3. Messages both ways are 4-byte big-endian length + JSON.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import selectors
import shutil
import signal
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import linux
from .child import run_child
from .isolation import isolate

HEADER = struct.Struct(">I")


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    data = orjson.dumps(message)
    sock.sendall(HEADER.pack(len(data)) + data)


class Capture:
    """Keeps the head and tail of a stream, counting everything produced."""

    def __init__(self, cap: int):
        self.half = max(cap // 2, 1)
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_len = 0
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail.append(data)
            self.tail_len += len(data)
            while self.tail_len - len(self.tail[0]) >= self.half:
                self.tail_len -= len(self.tail.popleft())

    def text(self) -> tuple[str, bool]:
        tail = b"".join(self.tail)[-self.half :] if self.tail else b""
        if self.total <= len(self.head) + len(tail):
            return (bytes(self.head) + tail).decode("utf-8", "replace"), False
        dropped = self.total - len(self.head) - len(tail)
        marker = f"\n[... {dropped} bytes of output cut ...]\n".encode()
        return (bytes(self.head) + marker + tail).decode("utf-8", "replace"), True


# -- the reaper: a small process that kills every process of a uid --------------------------


class Reaper:
    """Forked before the heavy imports so that its own forks stay cheap. For a uid it forks a
    child that takes that uid and sends SIGKILL to everything it may signal (`kill(-1)`), i.e.
    every process of the job, including `setsid` escapees, until none is left."""

    def __init__(self) -> None:
        req_r, self.req_w = os.pipe()
        self.done_r, done_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            # Hold nothing of the parent's (above all the control socket, whose EOF tells the pool
            # that the parent died) and die with it.
            low, high = sorted((req_r, done_w))
            os.closerange(3, low)
            os.closerange(low + 1, high)
            os.closerange(high + 1, 65536)
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            self._serve(req_r, done_w)
        os.close(req_r)
        os.close(done_w)

    @staticmethod
    def _serve(req_r: int, done_w: int) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        while True:
            data = os.read(req_r, 4)
            if len(data) < 4:
                os._exit(0)
            uid = struct.unpack(">I", data)[0]
            pid = os.fork()
            if pid == 0:
                os._exit(_kill_uid(uid))
            os.waitpid(pid, 0)
            os.write(done_w, data)

    def request(self, uid: int) -> None:
        os.write(self.req_w, struct.pack(">I", uid))


def live_processes(uid: int) -> list[int]:
    """Pids of processes of `uid` that are not zombies (a zombie holds nothing but its pid)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            pids.append(int(name))
    return pids


def _kill_uid(uid: int) -> int:
    """As `uid`, SIGKILL everything we may signal until no process of `uid` is left.

    kill(-1) reports success whenever any other process exists, so completion is checked in
    /proc (which, mounted with hidepid=2, shows this uid nothing but its own processes).
    Zombies stay listed until the parent reaps them; the parent does so as they appear."""
    try:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        me = os.getpid()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            os.kill(-1, signal.SIGKILL)
            if not any(pid != me for pid in live_processes(uid)):
                return 0
            time.sleep(0.0005)
        return 1
    except BaseException:
        return 2


# -- one job -----------------------------------------------------------------------------------


@dataclass
class Job:
    id: Any
    uid: int | None
    limits: dict[str, Any]
    pid: int
    dir: str
    started: float
    deadline: float
    fork_seconds: float
    out: Capture
    err: Capture
    fds: dict[int, str] = field(default_factory=dict)  # fd -> "out" | "err" | "info"
    info: bytearray = field(default_factory=bytearray)
    exit_status: int | None = None
    ended: float | None = None
    reason: str | None = None  # why the parent killed it: timeout | flood
    sweeping: bool = False


# -- the event loop --------------------------------------------------------------------------


class Zygote:
    def __init__(self, sock: socket.socket, job_root: str, reaper: Reaper | None, tier: str):
        self.sock = sock
        self.job_root = job_root
        self.reaper = reaper
        self.tier = tier
        self.sel = selectors.DefaultSelector()
        self.jobs: dict[int, Job] = {}  # pid -> job
        self.sweeps: dict[int, list[Job]] = {}  # uid -> jobs waiting for the sweep
        self.deferred: dict[int, list[dict[str, Any]]] = {}  # uid -> jobs waiting for a sweep
        self.buffer = bytearray()
        self.seq = 0
        self.pid = os.getpid()

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(self.sock, selectors.EVENT_READ, "control")
        self.sel.register(wake_r, selectors.EVENT_READ, "signal")
        if self.reaper is not None:
            self.sel.register(self.reaper.done_r, selectors.EVENT_READ, "reaper")
        while True:
            running = [
                j.deadline for j in self.jobs.values() if j.exit_status is None and j.reason is None
            ]
            timeout = max(0.0, min(running) - time.monotonic()) if running else None
            for key, _ in self.sel.select(timeout):
                what = key.data
                if what == "control":
                    if not self._read_control():
                        return
                elif what == "signal":
                    try:
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
                elif what == "reaper":
                    self._sweep_done(os.read(self.reaper.done_r, 4))  # type: ignore[union-attr]
                else:
                    self._read_pipe(key.fd, what)
            self._reap()
            self._check_deadlines()

    # control messages
    def _read_control(self) -> bool:
        data = self.sock.recv(1 << 20)
        if not data:
            return False
        self.buffer += data
        while len(self.buffer) >= 4:
            (n,) = HEADER.unpack_from(self.buffer)
            if len(self.buffer) < 4 + n:
                break
            message = orjson.loads(bytes(self.buffer[4 : 4 + n]))
            del self.buffer[: 4 + n]
            if message.get("op") == "run":
                uid = message.get("uid")
                if message.get("sweep_first") and uid is not None and self.reaper is not None:
                    # the slot's uid may have processes left from a parent that died: clear first
                    self.deferred.setdefault(int(uid), []).append(message)
                    self._sweep(int(uid), None)
                else:
                    self._start(message)
        return True

    def _start(self, message: dict[str, Any]) -> None:
        uid = message.get("uid")
        uid = int(uid) if uid is not None and os.geteuid() == 0 else None
        self.seq += 1
        jobdir = os.path.join(self.job_root, f"job-{self.seq}")
        os.mkdir(jobdir, 0o700)
        with open(os.path.join(jobdir, "main.py"), "w") as fh:
            fh.write(message["code"])
        if uid is not None:
            os.chown(jobdir, uid, uid)
            os.chown(os.path.join(jobdir, "main.py"), uid, uid)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        info_r, info_w = os.pipe()
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            run_child(message, jobdir, (out_w, err_w, info_w), self.pid, uid)
        fork_seconds = time.perf_counter() - t
        for fd in (out_w, err_w, info_w):
            os.close(fd)
        limits = message["limits"]
        now = time.monotonic()
        job = Job(
            id=message["job"],
            uid=uid,
            limits=limits,
            pid=pid,
            dir=jobdir,
            started=now,
            deadline=now + float(limits["timeout"]),
            fork_seconds=fork_seconds,
            out=Capture(int(limits["max_output"])),
            err=Capture(int(limits["max_output"])),
        )
        for fd, name in ((out_r, "out"), (err_r, "err"), (info_r, "info")):
            os.set_blocking(fd, False)
            job.fds[fd] = name
            self.sel.register(fd, selectors.EVENT_READ, (job, name))
        self.jobs[pid] = job

    # job output
    def _read_pipe(self, fd: int, what: tuple[Job, str]) -> None:
        job, name = what
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self.sel.unregister(fd)
            os.close(fd)
            del job.fds[fd]
            self._maybe_finish(job)
            return
        if name == "info":
            job.info += data
            return
        (job.out if name == "out" else job.err).feed(data)
        if (
            job.out.total + job.err.total > int(job.limits["flood_bytes"])
            and job.reason is None
            and job.exit_status is None
        ):
            job.reason = "flood"
            self._kill(job)

    def _kill(self, job: Job) -> None:
        try:
            os.kill(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if job.uid is None:
            try:
                os.killpg(job.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for job in self.jobs.values():
            if job.exit_status is None and job.reason is None and now >= job.deadline:
                job.reason = "timeout"
                self._kill(job)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.jobs.get(pid)
            if job is None:
                continue  # an orphaned grandchild handed to us as subreaper, or the reaper
            job.exit_status = status
            job.ended = time.monotonic()
            if job.uid is not None and self.reaper is not None:
                self._sweep(job.uid, job)
            else:
                try:
                    os.killpg(job.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self._drain(job)
                self._maybe_finish(job)

    def _sweep(self, uid: int, job: Job | None) -> None:
        if job is not None:
            job.sweeping = True
            self.sweeps.setdefault(uid, []).append(job)
        self.reaper.request(uid)  # type: ignore[union-attr]

    def _sweep_done(self, data: bytes) -> None:
        uid = struct.unpack(">I", data)[0]
        for job in self.sweeps.pop(uid, []):
            job.sweeping = False
            self._drain(job)
            self._maybe_finish(job)
        for message in self.deferred.pop(uid, []):
            self._start(message)

    def _drain(self, job: Job) -> None:
        """Everything of the job is dead: read what is left in its pipes."""
        for fd, name in list(job.fds.items()):
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not data:
                    self.sel.unregister(fd)
                    os.close(fd)
                    del job.fds[fd]
                    break
                if name == "info":
                    job.info += data
                else:
                    (job.out if name == "out" else job.err).feed(data)

    def _maybe_finish(self, job: Job) -> None:
        if job.exit_status is None or job.sweeping:
            return
        if job.fds and job.uid is not None:
            return  # wait for the pipes to close (the sweep guarantees they will)
        for fd in list(job.fds):
            self.sel.unregister(fd)
            os.close(fd)
        job.fds.clear()
        del self.jobs[job.pid]
        self._finish(job)

    def _finish(self, job: Job) -> None:
        status = job.exit_status or 0
        info: dict[str, Any] = {}
        try:
            info = orjson.loads(bytes(job.info)) if job.info else {}
        except orjson.JSONDecodeError:
            pass
        exit_code = os.waitstatus_to_exitcode(status)
        stdout, t1 = job.out.text()
        stderr, t2 = job.err.text()
        message = None
        if job.reason == "timeout":
            state = "timeout"
        elif job.reason == "flood":
            state, message = "killed", f"output exceeded {job.limits['flood_bytes']} bytes"
        elif info.get("memory"):
            state = "memory"
        elif exit_code < 0:
            sig = -exit_code
            if sig == signal.SIGXCPU:
                state = "timeout"
            else:
                state = "killed"
                message = (
                    f"signal {signal.Signals(sig).name}"
                    if sig in signal.Signals._value2member_map_
                    else f"signal {sig}"
                )
        elif info.get("setup_error"):
            state, message = "killed", "sandbox setup failed: " + info["setup_error"]
        else:
            state = "ok" if exit_code == 0 else "error"
        shutil.rmtree(job.dir, ignore_errors=True)
        now = time.monotonic()
        timings = {
            "fork": round(job.fork_seconds, 6),
            "setup": round(info.get("setup", 0.0), 6),
            "program": round(info.get("program", 0.0), 6),
            "teardown": round(now - (job.ended or now), 6),
        }
        send(
            self.sock,
            {
                "job": job.id,
                "status": state,
                "exit_code": exit_code,
                "stdout": stdout,
                "stderr": stderr,
                "seconds": round((job.ended or now) - job.started, 6),
                "truncated": t1 or t2,
                "tier": self.tier,
                "timings": timings,
                "message": message,
            },
        )


def _warm_up() -> None:
    """Pay one-time lazy initialisations here, once, instead of in every job."""
    import random
    import tempfile

    random.seed()
    tempfile.gettempdir()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # the first seeding costs ~15 ms
    if "pulp" in sys.modules:
        try:
            sys.modules["pulp"].PULP_CBC_CMD(msg=False).available()
        except Exception:
            pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True, help="our end of the pool's socketpair")
    parser.add_argument("--tier", required=True)
    parser.add_argument("--modules", default="")
    parser.add_argument("--disk-mb", type=int, default=1024)
    args = parser.parse_args()
    sock = socket.socket(fileno=args.fd)
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the pool
    job_root, protections = isolate(args.disk_mb)
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)  # orphans of jobs come back to us to be reaped
    reaper = Reaper() if os.geteuid() == 0 else None
    loaded, failed = [], {}
    for name in filter(None, args.modules.split(",")):
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # a missing optional module must not kill the pool
            failed[name] = repr(exc)
    _warm_up()
    if reaper is None:
        protections["kill everything at job end"] = (
            "partial: process group only (setsid escapes survive without root)"
        )
    else:
        protections["kill everything at job end"] = "on (per-uid sweep, including setsid escapes)"
    protections["rlimits"] = "on (address space, CPU time, file size, open files, processes)"
    gc.collect()
    gc.freeze()  # a child's first collection would otherwise touch (and copy) every warm page
    send(
        sock,
        {
            "ready": True,
            "pid": os.getpid(),
            "tier": args.tier,
            "modules": loaded,
            "failed": failed,
            "protections": protections,
        },
    )
    Zygote(sock, job_root, reaper, args.tier).run()


if __name__ == "__main__":
    main()
