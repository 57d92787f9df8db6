"""The clean template every job is forked from.

A forked child inherits its parent's whole heap. The sandbox parent holds what jobs must never
see: other jobs' code (it writes each job's files), their partial output (it reads the pipes)
and their results, and freed memory keeps them long after. So the parent forks this template
once, after the warm imports and before any job arrives, and every job is forked by the
template: a process that has never held a job's code, stdin, output or result. It only ever
sees where a job lives (its directory, uid, and namespaces and cgroups as file descriptors) and,
after the job ended, its wait status and CPU time, which it hands straight to the parent.
The job reads its own code and settings from its own directory (jobspace.py).

Messages (SOCK_SEQPACKET): parent -> template b"F" + JSON place, with the job's fds
(stdout, stderr and setup-report pipes, then a namespace holder's pidfd if any, then one
`cgroup.procs` fd per controller); template -> parent b"F" + pid with the job's pidfd, or
b"E" + reason; and, whenever a job's first process ends, b"X" + pid, wait status, CPU seconds.
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

    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                self.sock.close()
                keep = theirs.fileno()
                os.closerange(3, keep)
                os.closerange(keep + 1, 65536)
                _serve(theirs)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(0)
        theirs.close()
        self.exits: deque[tuple[int, int, float]] = deque()  # exits read while forking

    def fork(self, place: dict, fds: list[int]) -> tuple[int, int]:
        """Fork one job: (its pid, a pidfd of it). Raises OSError if the fork failed."""
        socket.send_fds(self.sock, [b"F" + orjson.dumps(place)], fds)
        while True:
            data, got, _, _ = socket.recv_fds(self.sock, 512, 1)
            kind = data[:1]
            if kind == b"X":
                self.exits.append(EXITED.unpack(data[1:]))
            elif kind == b"F":
                return FORKED.unpack(data[1:])[0], got[0]
            elif kind == b"E":
                raise OSError(
                    0, "the job could not be forked: " + data[1:].decode(errors="replace")
                )
            else:
                for fd in got:
                    os.close(fd)
                raise TemplateDied("the sandbox template died")

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
            ready = select.select([sock, wake_r], [], [])[0]
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
            try:
                spec = orjson.loads(data[1:])
                holder = fds[3] if spec["holder"] else -1
                first_cgroup = 4 if spec["holder"] else 3
                place = JobPlace(
                    jobfs=spec["jobfs"],
                    name=spec["name"],
                    uid=spec["uid"],
                    holder_pidfd=holder,
                    own_root=spec["own_root"],
                    use_seccomp=spec["seccomp"],
                    parent_pid=me,
                    cgroup_fds=tuple(fds[first_cgroup:]),
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
