"""Runs in the sandbox parent's helper process: small (forked before the heavy imports), it does
the work the parent's event loop must never wait for: making namespace holders, removing jobs'
files and sweeping uids. `Helper` is the parent's side of it.

- Namespace holders. A holder is a tiny process that is pid 1 of a fresh pid namespace and
  owns a fresh network, IPC and UTS namespace (its host name is `sandbox`). A job is forked into a holder's namespaces, so it has
  no network, no abstract unix sockets or SysV IPC shared with anyone, and sees only its own
  processes. Killing the holder makes the kernel kill every process of the job, however it
  hid (setsid, SIGSTOP games, double forks), without ever running anything as the job's uid.
  A holder also enforces the job's deadline on its own, so a stalled parent cannot let a job
  run over its time. Holders are made ahead of need, off the parent's critical path.
- Cleanup: unmounting a job's tmpfs (or removing its directory tree, iteratively: no depth
  limit) happens here, so that 500k files or a 1500-deep tree never stall the parent.
- Uid sweeps (only where pid namespaces are unavailable, or after a parent died): SIGKILL every
  process of a uid, as root, from outside the uid, with a bounded number of rounds.

Messages are SOCK_SEQPACKET packets: b"H" (make a holder) -> b"H" + pid with two fds (a pidfd
and the write end of the holder's control pipe); b"U" + path (remove a job's files); b"W" +
path (the same, answered b"W" + path once the file system is unmounted); b"S" +
uid -> b"S" + uid when the sweep is over.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import stat
import struct
import time
from typing import Any

from . import linux

U32 = struct.Struct(">I")
DOUBLE = struct.Struct("d")


def remove_tree(path: str) -> None:
    """rm -rf without recursion (a 1500-deep tree would overflow Python's stack)."""
    try:
        linux.umount(path, linux.MNT_DETACH)
    except OSError:
        pass
    stack = [(path, False)]
    while stack:
        current, expanded = stack.pop()
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            continue
        if not stat.S_ISDIR(mode):
            try:
                os.unlink(current)
            except OSError:
                pass
            continue
        if expanded:
            try:
                os.rmdir(current)
            except OSError:
                pass
            continue
        stack.append((current, True))
        try:
            os.chmod(current, 0o700)
            with os.scandir(current) as entries:
                stack.extend((e.path, False) for e in entries)
        except OSError:
            pass


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


def sweep_uid(uid: int, seconds: float = 5.0) -> bool:
    """As root, SIGKILL every process of `uid` until none is left (or `seconds` pass).
    SIGSTOP first, so that a fork loop cannot outrun the scan."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pids = live_processes(uid)
        if not pids:
            return True
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        time.sleep(0.001)
    return False


def _holder(ready_w: int, ctl_r: int) -> None:
    """pid 1 of a job's pid namespace. Never returns."""
    try:
        low, high = sorted((ready_w, ctl_r))
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, 65536)
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # orphans of the job are reaped at once
        linux.unshare(linux.CLONE_NEWNET | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS)
        socket.sethostname("sandbox")  # the host's name is not the job's business
        os.write(ready_w, b"1")
        os.close(ready_w)
        deadline = None  # the parent sends the job's deadline, then moves it once the job's
        while True:  # setup is over (its code's time starts then); EOF or the deadline: end
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            if select.select([ctl_r], [], [], left)[0]:
                data = os.read(ctl_r, DOUBLE.size)
                if len(data) != DOUBLE.size:
                    break
                (deadline,) = DOUBLE.unpack(data)
    finally:
        os._exit(0)  # the kernel now kills every process of the namespace


class Helper:
    """The sandbox parent's side of its helper process (see the module docstring)."""

    def __init__(self, holders: bool):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            self.sock.close()
            keep = theirs.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, 65536)
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            try:
                _serve(theirs, holders)
            finally:
                os._exit(0)
        theirs.close()

    def request_holder(self) -> None:
        self.sock.send(b"H")

    def remove(self, path: str) -> None:
        self.sock.send(b"U" + path.encode())

    def remove_then_tell(self, path: str) -> None:
        """Unmount a job's file system, answer b"W" + path (its pages are freed), then remove
        the directory: a slot's next job must not find them charged to the slot's cgroup."""
        self.sock.send(b"W" + path.encode())

    def sweep(self, uid: int) -> None:
        self.sock.send(b"S" + U32.pack(uid))

    def receive(self) -> tuple[str, Any, list[int]]:
        """One answer: ("H", pid, [pidfd, ctl_w]) or ("S", uid, []) or ("E", 0, []), or
        ("W", path, [])."""
        data, fds, _, _ = socket.recv_fds(self.sock, 4096, 2)
        if not data:
            raise EOFError("the sandbox helper died")
        kind = data[:1].decode()
        if kind == "W":
            return kind, data[1:].decode(), []
        value = U32.unpack(data[1:5])[0] if len(data) >= 5 else 0
        return kind, value, list(fds)


def _serve(sock: socket.socket, holders: bool) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # holders are reaped by the kernel
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY) if holders else -1
    while True:
        data = sock.recv(4096)
        if not data:
            return
        kind, rest = data[:1], data[1:]
        if kind == b"U":
            remove_tree(rest.decode())
        elif kind == b"W":
            try:
                linux.umount(rest.decode(), linux.MNT_DETACH)
            except OSError:
                pass
            sock.send(data)
            remove_tree(rest.decode())
        elif kind == b"S":
            sweep_uid(U32.unpack(rest)[0])
            sock.send(data)
        elif kind == b"H":
            try:
                pid, fds = _make_holder(own_pidns)
            except OSError as exc:
                sock.send(b"E" + str(exc).encode()[:200])
                continue
            socket.send_fds(sock, [b"H" + U32.pack(pid)], fds)
            for fd in fds:
                os.close(fd)


def _make_holder(own_pidns: int) -> tuple[int, list[int]]:
    ready_r, ready_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    linux.unshare(linux.CLONE_NEWPID)  # our next child is pid 1 of a new namespace
    try:
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os.close(ctl_w)
            _holder(ready_w, ctl_r)
    finally:
        linux.setns(own_pidns, linux.CLONE_NEWPID)
    os.close(ready_w)
    os.close(ctl_r)
    try:
        ok = os.read(ready_r, 1) == b"1"  # namespaces are made before the holder is handed out
    finally:
        os.close(ready_r)
    if not ok:
        os.close(ctl_w)
        raise OSError(0, "a namespace holder failed to start")
    return pid, [linux.pidfd_open(pid), ctl_w]
