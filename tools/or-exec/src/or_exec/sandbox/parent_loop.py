"""Runs in the sandbox parent: its event loop. It has the clean template (template.py) fork
one child per job and watches it without ever waiting on a job. Slow work (removing a job's
files, sweeping a uid, making namespaces) is the helper process's (helper.py), every wait has a
deadline, and a job's status comes from what the parent measured (outcome.py).
"""

from __future__ import annotations

import base64
import os
import selectors
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

import orjson

from ..outcome import SETUP_RECORD_MAX, result_message
from . import linux
from .cgroups import Cgroups
from .helper import DOUBLE, Helper
from .jobspace import Holder, Job, fetch_files, make_jobfs
from .template import Template, TemplateDied
from .wire import HEADER, Capture, send, send_failure

SPARE_HOLDERS = 2
MAX_SPARE_HOLDERS = 32
HOLDER_GRACE = 0.25  # a holder ends its job this long after the deadline if we have not
SETUP_ALLOWANCE = 5.0  # the timeout counts from the end of the job's setup (at most this)
FINISH_WAIT = 5.0  # longest wait for a job's processes to be gone after it ended
MAX_MESSAGE = 64 << 20
FETCH_CAP = 16 << 20  # bytes of files a client may fetch from one job


class SandboxParent:
    """The sandbox parent's state and event loop (see the module docstring)."""

    def __init__(self, sock: socket.socket, jobs_root: str, own_root: bool, tier: str, **opts):
        self.sock = sock
        self.jobs_root = jobs_root
        self.own_root = own_root
        self.tier = tier
        self.helper: Helper = opts["helper"]
        self.template: Template = opts["template"]
        self.cgroups: Cgroups | None = opts.get("cgroups")
        self.vm_size = _vm_size()  # bytes of address space mapped before any job
        self.slots: dict[int, Template] = {}  # uid -> its slot template (with cgroups only)
        self.unmounting: dict[str, tuple[Job, bool]] = {}  # jobfs -> (job, oom killed)
        self.to_read: set[Template] = set()  # templates that may hold exit reports
        self.holders_ok: bool = opts["holders_ok"]
        self.seccomp_ok: bool = opts["seccomp_ok"]
        self.disk_mb: int = opts["disk_mb"]
        self.root = os.geteuid() == 0
        self.sel = selectors.DefaultSelector()
        self.jobs: dict[int, Job] = {}  # pid -> job
        self.spares: deque[Holder] = deque(opts.get("spares") or ())
        self.requested = 0
        self.waiting: deque[dict[str, Any]] = deque()  # jobs waiting for a holder
        self.sweeps: dict[int, list[Any]] = {}  # uid -> jobs or messages waiting for a sweep
        self.buffer = bytearray()
        self.pid = os.getpid()

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(self.sock, selectors.EVENT_READ, "control")
        self.sel.register(wake_r, selectors.EVENT_READ, "signal")
        self.sel.register(self.helper.sock, selectors.EVENT_READ, "helper")
        self.sel.register(self.template.sock, selectors.EVENT_READ, ("template", self.template))
        self._want_holders()
        while True:
            for key, _ in self.sel.select(self._next_timeout()):
                what = key.data
                if what == "control":
                    if not self._read_control():
                        return
                elif what == "signal":
                    try:
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
                elif what == "helper":
                    self._helper_answer()
                elif what[0] == "template":
                    self.to_read.add(what[1])  # its exit reports are read below
                elif what[0] == "holder":
                    self._world_gone(what[1])
                else:
                    self._read_pipe(key.fd, what)
            self._reap()
            self._check_deadlines()

    def _next_timeout(self) -> float | None:
        times = [
            j.deadline if j.exit_status is None and j.reason is None else j.finish_by
            for j in self.jobs.values()
        ]
        known = [t for t in times if t is not None]
        return max(0.0, min(known) - time.monotonic()) if known else None

    # -- control messages ----------------------------------------------------------------------
    def _read_control(self) -> bool:
        data = self.sock.recv(1 << 20)
        if not data:
            return False
        self.buffer += data
        while len(self.buffer) >= 4:
            (n,) = HEADER.unpack_from(self.buffer)
            if n > MAX_MESSAGE:
                raise SystemExit("or-exec: oversized control message")
            if len(self.buffer) < 4 + n:
                break
            raw = bytes(self.buffer[4 : 4 + n])
            del self.buffer[: 4 + n]
            try:
                message = orjson.loads(raw)
                if not isinstance(message, dict) or message.get("op") not in ("run", "cancel"):
                    raise ValueError("not a run or cancel message")
            except ValueError as exc:
                print(f"or-exec: ignored a malformed control message: {exc}", file=sys.stderr)
                continue
            if message["op"] == "cancel":
                self._cancel(message.get("job"))
                continue
            uid = message.get("uid") if self.root else None
            if message.get("sweep_first") and isinstance(uid, int):
                # the slot's uid may have processes left from a parent that died: clear first
                self.sweeps.setdefault(uid, []).append(message)
                self.helper.sweep(uid)
            else:
                self._admit(message)
        return True

    def _cancel(self, job_id: Any) -> None:
        """The client went away: kill its job (or drop it before it started)."""
        for job in self.jobs.values():
            if job.id == job_id and job.exit_status is None and job.reason is None:
                job.reason = "cancelled"
                self._kill(job)
                return
        for message in list(self.waiting):
            if message.get("job") == job_id:
                self.waiting.remove(message)
                send_failure(self.sock, job_id, self.tier, "cancelled: the client went away")
                return

    def _admit(self, message: dict[str, Any]) -> None:
        if self.holders_ok and not self.spares:
            self.waiting.append(message)
            self._want_holders()
            return
        holder = self.spares.popleft() if self.holders_ok else None
        self._want_holders()
        try:
            self._start(message, holder)
        except TemplateDied:  # nothing can start here any more: the pool respawns us
            raise SystemExit("or-exec: the sandbox template died") from None
        except Exception as exc:  # a job that cannot start is that job's error, not ours
            if holder is not None:
                self._end_holder(holder)
            send_failure(
                self.sock,
                message.get("job"),
                self.tier,
                f"sandbox could not start the job: {exc!r}",
            )

    def _want_holders(self) -> None:
        if not self.holders_ok:
            return
        # as many spares as jobs running (a burst of starts then finds them ready), 2 at least
        spares = min(max(SPARE_HOLDERS, len(self.jobs)), MAX_SPARE_HOLDERS)
        while len(self.spares) + self.requested < spares + len(self.waiting):
            self.helper.request_holder()
            self.requested += 1

    def _helper_answer(self) -> None:
        kind, value, fds = self.helper.receive()
        if kind == "H":
            self.requested -= 1
            self.spares.append(Holder(value, fds[0], fds[1]))
        elif kind == "E":  # holders stopped working: go on without them
            self.requested -= 1
            self.holders_ok = False
            print("or-exec: namespace holders failed; jobs share namespaces", file=sys.stderr)
        elif kind == "W":
            job, oom = self.unmounting.pop(value)
            self._finish(job, oom)
            return
        elif kind == "S":
            for item in self.sweeps.pop(value, []):
                if isinstance(item, Job):
                    self._world_gone(item)
                else:
                    self._admit(item)
            return
        while self.waiting and (self.spares or not self.holders_ok):
            self._admit(self.waiting.popleft())

    # -- starting a job --------------------------------------------------------------------------
    def _start(self, message: dict[str, Any], holder: Holder | None) -> None:
        limits = message["limits"]
        timeout = float(limits["timeout"])
        if not 0 < timeout < 1e6:
            raise ValueError(f"bad timeout {timeout}")
        uid = message.get("uid") if self.root else None
        uid = int(uid) if uid is not None else None
        spec = {"limits": limits, "env": message.get("env") or {}}
        if self.cgroups is not None:
            spec["address_space_extra"] = self.vm_size
        spec["prelude"] = message.get("prelude") or []
        files = {k: base64.b64decode(v) for k, v in (message.get("files") or {}).items()}
        stdin = message.get("stdin")
        jobfs, name = make_jobfs(
            self.jobs_root,
            message["code"],
            spec,
            uid,
            self.disk_mb,
            self.helper.remove,
            files=files,
            stdin=stdin.encode("utf-8", "surrogateescape") if isinstance(stdin, str) else None,
        )
        now = time.monotonic()
        job = Job(
            id=message["job"],
            uid=uid,
            limits=limits,
            jobfs=jobfs,
            started=now,
            deadline=now + timeout + SETUP_ALLOWANCE,
            out=Capture(int(limits["max_output"])),
            err=Capture(int(limits["max_output"])),
            holder=holder,
            cwd=os.path.join(jobfs, "tmp", name),
            fetch=list(message.get("fetch") or ()),
        )
        place = {
            "jobfs": jobfs,
            "name": name,
            "uid": uid,
            "holder": holder is not None,
            "own_root": self.own_root,
            "seccomp": self.seccomp_ok,
        }
        pipes: list[int] = []
        try:
            template = self._template_for(uid)
            if template is not self.template and self.cgroups is not None:
                job.cgroup = f"slot-{uid}"
                self.cgroups.limit_memory(job.cgroup, int(limits["memory_mb"]) << 20)
                job.oom_base = self.cgroups.oom_kills(job.cgroup)
            for _ in range(3):
                pipes.extend(os.pipe())
            out_r, out_w, err_r, err_w, info_r, info_w = pipes
            t = time.perf_counter()
            fds = [out_w, err_w, info_w, *([holder.pidfd] if holder else [])]
            self.to_read.add(template)  # it may buffer other jobs' exits while we wait for it
            pid, pidfd = template.fork(place, fds)
        except BaseException:
            for fd in pipes:
                os.close(fd)
            self.helper.remove(jobfs)
            raise
        for fd in (out_w, err_w, info_w):
            os.close(fd)
        job.pid = pid
        job.pidfd = pidfd
        job.fork_seconds = time.perf_counter() - t
        self._tell_holder(job)
        for fd, what in ((out_r, "out"), (err_r, "err"), (info_r, "info")):
            os.set_blocking(fd, False)
            job.fds[fd] = what
            self.sel.register(fd, selectors.EVENT_READ, (job, what))
        self.jobs[pid] = job

    def _template_for(self, uid: int | None) -> Template:
        """Where the job is forked from: its slot's template, in the slot's cgroups (made on
        the slot's first job), or, without cgroups, the first template itself."""
        if self.cgroups is None or uid is None:
            return self.template
        template = self.slots.get(uid)
        if template is None:
            fds = self.cgroups.make(f"slot-{uid}")
            try:
                template = self.template.spawn(fds)
            finally:
                for fd in fds:
                    os.close(fd)
            self.slots[uid] = template
            self.sel.register(template.sock, selectors.EVENT_READ, ("template", template))
        return template

    def _tell_holder(self, job: Job) -> None:
        if job.holder is not None:
            try:
                os.write(job.holder.ctl_w, DOUBLE.pack(job.deadline + HOLDER_GRACE))
            except OSError:
                pass  # the holder is gone, and the job with it: reaped as usual

    def _setup_over(self, job: Job) -> None:
        """The job's code starts now (the setup record came, and the channel closed): its
        timeout counts from here, so that sandbox overhead under load is not charged to it."""
        if job.exit_status is None and job.reason is None:
            job.deadline = time.monotonic() + float(job.limits["timeout"])
            self._tell_holder(job)

    # -- a job's output ------------------------------------------------------------------------
    def _close_fd(self, job: Job, fd: int) -> None:
        self.sel.unregister(fd)
        os.close(fd)
        del job.fds[fd]

    def _read_pipe(self, fd: int, what: tuple[Job, str]) -> None:
        job, name = what
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self._close_fd(job, fd)
            if name == "info":
                self._setup_over(job)
            self._maybe_finish(job)
            return
        if name == "info":
            job.info += data
            if len(job.info) > SETUP_RECORD_MAX:
                self._close_fd(job, fd)  # not a setup record: ignore it
            return
        (job.out if name == "out" else job.err).feed(data)
        if (
            job.out.total + job.err.total > int(job.limits["flood_bytes"])
            and job.reason is None
            and job.exit_status is None
        ):
            job.reason = "flood"
            self._kill(job)

    def _drain(self, job: Job) -> None:
        """Everything of the job is dead (or we stopped waiting): read what is left."""
        for fd, name in list(job.fds.items()):
            for _ in range(1024):  # bounded: a pipe holds at most 1 MiB here
                try:
                    data = os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    break
                if not data:
                    break
                if name == "info":
                    if len(job.info) <= SETUP_RECORD_MAX:
                        job.info += data
                else:
                    (job.out if name == "out" else job.err).feed(data)
            self._close_fd(job, fd)

    # -- ending a job --------------------------------------------------------------------------
    def _kill(self, job: Job) -> None:
        try:  # by pidfd: the template may have reaped it already, and its pid be reused
            linux.pidfd_send_signal(job.pidfd, signal.SIGKILL)
        except OSError:
            pass
        if job.holder is not None:
            self._end_holder(job.holder, close=False)
        elif job.uid is None:
            try:
                os.killpg(job.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _end_holder(self, holder: Holder, close: bool = True) -> None:
        try:
            linux.pidfd_send_signal(holder.pidfd, signal.SIGKILL)
        except OSError:
            pass
        if close:
            holder.close()

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.exit_status is None and job.reason is None and now >= job.deadline:
                job.reason = "timeout"
                self._kill(job)
            elif job.finish_by is not None and now >= job.finish_by:
                job.world_gone = True  # stop waiting: bounded, whatever is left
                self._maybe_finish(job)

    def _reap(self) -> None:
        """Our own children (the helper, the template, orphans) are reaped and forgotten; the
        jobs' ends come from the template, which forked them."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self.template.pid:
                raise SystemExit("or-exec: the sandbox template died")
        templates, self.to_read = self.to_read, set()
        for template in templates:  # only those that reported, not every slot's each time
            try:
                exits = template.read_exits()
            except (TemplateDied, OSError):  # a slot template died: start afresh
                raise SystemExit("or-exec: a slot template died") from None
            for pid, status, cpu in exits:
                job = self.jobs.get(pid)
                if job is not None:
                    self._exited(job, status, cpu)

    def _exited(self, job: Job, status: int, cpu: float) -> None:
        job.exit_status = status
        job.cpu = cpu
        job.ended = time.monotonic()
        job.finish_by = job.ended + FINISH_WAIT
        if job.holder is not None:
            self._end_holder(job.holder, close=False)
            self.sel.register(job.holder.pidfd, selectors.EVENT_READ, ("holder", job))
        elif job.uid is not None:
            self.sweeps.setdefault(job.uid, []).append(job)
            self.helper.sweep(job.uid)
        else:
            try:
                os.killpg(job.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            job.world_gone = True
            self._maybe_finish(job)

    def _world_gone(self, job: Job) -> None:
        if job.holder is not None and not job.world_gone:
            try:
                self.sel.unregister(job.holder.pidfd)
            except (KeyError, ValueError):
                pass
        job.world_gone = True
        self._maybe_finish(job)

    def _maybe_finish(self, job: Job) -> None:
        if job.exit_status is None or not job.world_gone or job.pid not in self.jobs:
            return
        if job.fds and job.uid is None and time.monotonic() < (job.finish_by or 0):
            return  # without a uid of its own, wait (bounded) for the pipes to close
        self._drain(job)
        del self.jobs[job.pid]
        if job.holder is not None:
            try:
                self.sel.unregister(job.holder.pidfd)  # still there if we stopped waiting
            except (KeyError, ValueError):
                pass
            job.holder.close()
        os.close(job.pidfd)
        if job.fetch:  # before its file system goes
            job.fetched = fetch_files(job.cwd, job.fetch, FETCH_CAP)
        if job.cgroup is not None and self.cgroups is not None:
            oom = self.cgroups.oom_kills(job.cgroup) > job.oom_base
            # its tmpfs pages are charged to the slot: they go before the slot's next job
            self.unmounting[job.jobfs] = (job, oom)
            self.helper.remove_then_tell(job.jobfs)
        else:
            self.helper.remove(job.jobfs)
            self._finish(job, False)

    def _finish(self, job: Job, oom_killed: bool) -> None:
        send(self.sock, result_message(job, self.tier, oom_killed, time.monotonic()))


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        pass
    return 0
