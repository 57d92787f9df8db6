"""Thin ctypes wrappers for the Linux calls Python 3.11 lacks (unshare, setns, mount,
pivot_root, prctl, pidfds, keyctl)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MNT_DETACH = 2

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_CLEAR = 7
KEY_SPEC_USER_KEYRING = -4
KEY_SPEC_USER_SESSION_KEYRING = -5

#: Syscall numbers this module calls directly (glibc 2.31 has no wrappers for them).
SYSCALLS = {
    "x86_64": {"pivot_root": 155, "keyctl": 250, "pidfd_send_signal": 424, "pidfd_open": 434},
    "aarch64": {"pivot_root": 41, "keyctl": 219, "pidfd_send_signal": 424, "pidfd_open": 434},
}
MACHINE = platform.machine()


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(
        _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def _sys(name: str, *args: object) -> int:
    numbers = SYSCALLS.get(MACHINE)
    if numbers is None:
        raise OSError(38, f"{name}: no syscall number known for {MACHINE}")
    result = _syscall(ctypes.c_long(numbers[name]), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return result


def pivot_root(new_root: str, put_old: str) -> None:
    _sys("pivot_root", new_root.encode(), put_old.encode())


def pidfd_open(pid: int) -> int:
    return _sys("pidfd_open", ctypes.c_int(pid), ctypes.c_uint(0))


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    _sys("pidfd_send_signal", ctypes.c_int(pidfd), ctypes.c_int(sig), None, ctypes.c_uint(0))


def keyctl(op: int, arg: int = 0) -> int:
    return _sys("keyctl", ctypes.c_int(op), ctypes.c_long(arg), 0, 0, 0)


def seccomp_filter(program: bytes) -> None:
    """Install a classic-BPF seccomp filter (`program`: packed sock_filter structs)."""
    buf = ctypes.create_string_buffer(program, len(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    _check(
        _libc.prctl(
            ctypes.c_int(PR_SET_SECCOMP),
            ctypes.c_ulong(SECCOMP_MODE_FILTER),
            ctypes.byref(prog),
            0,
            0,
        ),
        "seccomp",
    )
