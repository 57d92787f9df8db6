"""The clean template every job is forked from.

A forked child inherits its parent's whole heap. The sandbox parent holds what jobs must never
see: other jobs' code (it writes each job's files), their partial output (it reads the pipes)
and their results, and freed memory keeps them long after. So the parent forks this template
once, after the warm imports and before any job arrives, and every job is forked by the
template: a process that has never held a job's code, stdin, output or result. It only ever
sees where a job lives (its directory, uid, and namespaces as file descriptors) and,
after the job ended, its wait status and CPU time, which it hands straight to the parent.
The job reads its own code and settings from its own directory (jobspace.py).

Where jobs get memory and CPU cgroups (cgroups.py), each slot has a template of its own, forked
by the first (clean) template and moved into the slot's cgroups once: its jobs are born in them.
Moving a process into a cgroup v1 waits for an RCU grace period, during which every fork and
exit on the machine waits too, so it must not happen once per job. One job runs in a slot at a
time, so the slot's cgroups account for exactly that job.

Messages (SOCK_SEQPACKET): parent -> template b"F" + JSON place, with the job's fds
(stdout, stderr and setup-report pipes, then a namespace holder's pidfd if any); template -> parent b"F" + pid with the job's pidfd, or
b"E" + reason; and, whenever a job's first process ends, b"X" + pid, wait status, CPU seconds.
To the first template only: b"T" with a slot's `cgroup.procs` fds -> b"T" + pid with the new
slot template's socket.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
from collections import deque

import orjson

from . import linux
from .child import JobPlace, run_child

FORKED = struct.Struct(">I")
EXITED = struct.Struct(">Iid")  # pid, wait status, CPU seconds (user + system)
MAX_FDS = 16


class TemplateDied(EOFError):
    pass


class Template:
    """The sandbox parent's side (see the module docstring)."""

    def __init__(self, sock: socket.socket | None = None, pid: int = 0) -> None:
        self.exits: deque[tuple[int, int, float]] = deque()  # exits read while forking
        if sock is not None:  # a slot template, made by `spawn`
            self.sock, self.pid = sock, pid
            return
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                self.sock.close()
                _only_fds(theirs.fileno())
                _serve(theirs)
            finally:
                os._exit(0)
        theirs.close()

    def spawn(self, cgroup_fds: list[int]) -> Template:
        """A slot template: forked by this (clean) one and moved into the slot's cgroups."""
        socket.send_fds(self.sock, [b"T"], cgroup_fds)
        data, fds = self._answer(b"T")
        return Template(socket.socket(fileno=fds[0]), FORKED.unpack(data[1:])[0])

    def _answer(self, kind: bytes) -> tuple[bytes, list[int]]:
        while True:
            data, got, _, _ = socket.recv_fds(self.sock, 512, 1)
            if data[:1] == b"X":
                self.exits.append(EXITED.unpack(data[1:]))
            elif data[:1] == kind:
                return data, got
            elif data[:1] == b"E":
                raise OSError(0, "the template failed: " + data[1:].decode(errors="replace"))
            else:
                for fd in got:
                    os.close(fd)
                raise TemplateDied("the sandbox template died")

    def fork(self, place: dict, fds: list[int]) -> tuple[int, int]:
        """Fork one job: (its pid, a pidfd of it). Raises OSError if the fork failed."""
        socket.send_fds(self.sock, [b"F" + orjson.dumps(place)], fds)
        data, got = self._answer(b"F")
        return FORKED.unpack(data[1:])[0], got[0]

    def read_exits(self) -> list[tuple[int, int, float]]:
        """Every job exit reported so far (never blocks)."""
        out = list(self.exits)
        self.exits.clear()
        while True:
            try:
                data = self.sock.recv(512, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            if not data:
                raise TemplateDied("the sandbox template died")
            if data[:1] == b"X":
                out.append(EXITED.unpack(data[1:]))


def _only_fds(*keep: int) -> None:
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 65536)


def _slot_template(sock: socket.socket, cgroup_fds: list[int]) -> None:
    """In a new child of the first template: join the slot's cgroups, then serve. Never
    returns."""
    try:
        for fd in cgroup_fds:
            os.write(fd, b"0")
        try:  # in the slot's memory cgroup, the OOM killer takes its jobs (at 1000) first
            with open("/proc/self/oom_score_adj", "w") as fh:
                fh.write("-1000")
        except OSError:  # no CAP_SYS_RESOURCE: jobs still go first (1000 against 0)
            pass
        _only_fds(sock.fileno())
        _serve(sock)
    finally:
        os._exit(0)


def _serve(sock: socket.socket) -> None:
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)  # orphans of a job come back here, not up
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY)
    me = os.getpid()
    jobs: set[int] = set()
    while True:
        try:
            ready = select.select([sock, wake_r], [], [])[0]  # type: ignore[type-var]  # typeshed's select wants one fd type per list; a socket and an int mix fine
        except InterruptedError:
            ready = []
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        if sock in ready:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 16, MAX_FDS)
            if not data:
                return
            if data[:1] == b"T":
                try:
                    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                    pid = os.fork()
                    if pid == 0:
                        sock.close()
                        ours.close()
                        signal.set_wakeup_fd(-1)
                        _slot_template(theirs, fds)
                    theirs.close()
                    socket.send_fds(sock, [b"T" + FORKED.pack(pid)], [ours.fileno()])
                    ours.close()
                except Exception as exc:
                    sock.send(b"E" + repr(exc).encode()[:300])
                finally:
                    for fd in fds:
                        os.close(fd)
                continue
            try:
                spec = orjson.loads(data[1:])
                holder = fds[3] if spec["holder"] else -1
                place = JobPlace(
                    jobfs=spec["jobfs"],
                    name=spec["name"],
                    uid=spec["uid"],
                    holder_pidfd=holder,
                    own_root=spec["own_root"],
                    use_seccomp=spec["seccomp"],
                    parent_pid=me,
                )
                if holder >= 0:
                    linux.setns(holder, linux.CLONE_NEWPID)  # our next child joins it
                try:
                    pid = os.fork()
                    if pid == 0:
                        signal.set_wakeup_fd(-1)
                        run_child(place, (fds[0], fds[1], fds[2]))
                finally:
                    if holder >= 0:
                        linux.setns(own_pidns, linux.CLONE_NEWPID)
                pidfd = linux.pidfd_open(pid)
                jobs.add(pid)
                socket.send_fds(sock, [b"F" + FORKED.pack(pid)], [pidfd])
                os.close(pidfd)
            except Exception as exc:  # one job's failure, never the template's
                sock.send(b"E" + repr(exc).encode()[:300])
            finally:
                for fd in fds:
                    os.close(fd)
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in jobs:
                jobs.discard(pid)
                sock.send(b"X" + EXITED.pack(pid, status, usage.ru_utime + usage.ru_stime))
