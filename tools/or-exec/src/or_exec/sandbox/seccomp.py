"""A small seccomp filter for jobs, written as classic BPF by hand (no libseccomp needed).

It closes the kernel surface a job has no use for and that attacks reach for first:
  - new namespaces: unshare(), setns(), clone() with any CLONE_NEW* flag (above all
    CLONE_NEWUSER, which would give the job full capabilities in a namespace of its own);
    clone3() answers ENOSYS so that glibc falls back to clone(), whose flags we can inspect
    (what Docker's default profile does);
  - io_uring and userfaultfd (the usual ingredients of kernel exploits);
  - the kernel keyrings (keyctl, add_key, request_key: a store that would outlive the job);
  - bpf() and perf_event_open();
  - inotify and fanotify (watching what other jobs open), fadvise and readahead, and reads or
    writes with RWF_NOWAIT (the page cache of shared files as a channel between jobs).
Everything else is allowed. A syscall from another ABI (x32, or 32-bit int 0x80) kills the
process, since the numbers below would not mean the same there.
"""

from __future__ import annotations

import errno
import struct

from . import linux

# BPF opcodes
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06

ALLOW = 0x7FFF0000
KILL_PROCESS = 0x80000000


def _errno(code: int) -> int:
    return 0x00050000 | code


ARCHES = {
    # AUDIT_ARCH value, syscall numbers
    "x86_64": (
        0xC000003E,
        {
            "unshare": 272,
            "setns": 308,
            "clone": 56,
            "clone3": 435,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "userfaultfd": 323,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "bpf": 321,
            "perf_event_open": 298,
            "inotify_init": 253,
            "inotify_init1": 294,
            "inotify_add_watch": 254,
            "fanotify_init": 300,
            "fadvise64": 221,
            "readahead": 187,
            "preadv2": 327,
            "pwritev2": 328,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "unshare": 97,
            "setns": 268,
            "clone": 220,
            "clone3": 435,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "userfaultfd": 282,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "bpf": 280,
            "perf_event_open": 241,
            "inotify_init1": 26,
            "inotify_add_watch": 27,
            "fanotify_init": 262,
            "fadvise64": 223,
            "readahead": 213,
            "preadv2": 286,
            "pwritev2": 287,
        },
    ),
}

NAMESPACE_FLAGS = (
    linux.CLONE_NEWNS
    | linux.CLONE_NEWCGROUP
    | linux.CLONE_NEWUTS
    | linux.CLONE_NEWIPC
    | linux.CLONE_NEWUSER
    | linux.CLONE_NEWPID
    | linux.CLONE_NEWNET
)
DENIED = {
    "unshare": errno.EPERM,
    "setns": errno.EPERM,
    "clone3": errno.ENOSYS,
    "io_uring_setup": errno.ENOSYS,
    "io_uring_enter": errno.ENOSYS,
    "io_uring_register": errno.ENOSYS,
    "userfaultfd": errno.EPERM,
    "keyctl": errno.EPERM,
    "add_key": errno.EPERM,
    "request_key": errno.EPERM,
    "bpf": errno.EPERM,
    "perf_event_open": errno.EPERM,
    # watching files other jobs open (the solver binary), and the page cache of shared
    # read-only files as a channel between jobs: evicting pages (fadvise), loading them
    # without reading (readahead), probing whether they are cached (RWF_NOWAIT, below)
    "inotify_init": errno.EPERM,
    "inotify_init1": errno.EPERM,
    "inotify_add_watch": errno.EPERM,
    "fanotify_init": errno.EPERM,
    "fadvise64": errno.EPERM,
    "readahead": errno.EPERM,
}
RWF_NOWAIT = 0x08
#: Syscalls whose flags (args[5]) may not hold RWF_NOWAIT: such a read fails at once when the
#: data is not in the page cache, which tells a job what another one read. EOPNOTSUPP is what
#: a file system without the flag answers, so callers fall back to a plain read.
NOWAIT_CHECKED = ("preadv2", "pwritev2")
X32_BIT = 0x40000000


def _op(code: int, jt: int = 0, jf: int = 0, k: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def build(machine: str = linux.MACHINE) -> bytes | None:
    """The filter program for `machine`, or None where we do not know its syscall numbers."""
    if machine not in ARCHES:
        return None
    arch, numbers = ARCHES[machine]
    prog = [
        _op(LD_W_ABS, k=4),  # seccomp_data.arch
        _op(JEQ_K, 1, 0, arch),
        _op(RET_K, k=KILL_PROCESS),
        _op(LD_W_ABS, k=0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        prog += [_op(JGE_K, 0, 1, X32_BIT), _op(RET_K, k=KILL_PROCESS)]
    for name, code in DENIED.items():
        if name in numbers:  # aarch64 has no inotify_init
            prog += [_op(JEQ_K, 0, 1, numbers[name]), _op(RET_K, k=_errno(code))]
    for name in NOWAIT_CHECKED:
        prog += [
            _op(JEQ_K, 0, 4, numbers[name]),
            _op(LD_W_ABS, k=16 + 5 * 8),  # low 32 bits of args[5]: the RWF_* flags
            _op(JSET_K, 0, 1, RWF_NOWAIT),
            _op(RET_K, k=_errno(errno.EOPNOTSUPP)),
            _op(RET_K, k=ALLOW),
        ]
    prog += [
        _op(JEQ_K, 0, 4, numbers["clone"]),
        _op(LD_W_ABS, k=16),  # low 32 bits of args[0] (little-endian): the clone flags
        _op(JSET_K, 0, 1, NAMESPACE_FLAGS),
        _op(RET_K, k=_errno(errno.EPERM)),
        _op(RET_K, k=ALLOW),
        _op(RET_K, k=ALLOW),
    ]
    return b"".join(prog)


PROGRAM = build()


def install() -> None:
    """Install the filter on the calling process (needs no_new_privs, or CAP_SYS_ADMIN)."""
    if PROGRAM is None:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {linux.MACHINE}")
    linux.seccomp_filter(PROGRAM)
