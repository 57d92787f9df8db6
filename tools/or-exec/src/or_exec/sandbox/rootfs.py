"""The minimal root a sandbox parent and its jobs live in (what bubblewrap and nsjail build).

A fresh tmpfs becomes `/`, holding only read-only binds of what Python and the solvers need:
`/usr` (and the `/bin`, `/lib`... links or binds beside it), the interpreter's installation, the
virtual environment, a few `/etc` files, the harmless `/dev` nodes, and `/proc`. The parent
`pivot_root`s into it and detaches the old root, so nothing else of the host (the checkout,
data files, answer files, unix sockets under `/run`) is visible to it or to any job.

`/.jobs` (root only) holds one size- and inode-limited tmpfs per job; inside its own mount
namespace a job sees that tmpfs as `/tmp` (and `/dev/shm`).
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Any

from . import linux

ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "host.conf",
    "os-release",
    "mime.types",
)
DEV_NODES = ("null", "zero", "full", "random", "urandom")
TOP_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
JOBS = "/.jobs"
JOB_INODES = 16384  # files and directories a job may create
RO = linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV


def needed_trees() -> list[str]:
    """Directories jobs must read: the interpreter's installation and the virtual environment
    (with the solver binaries inside). Workspace source folders on sys.path (the checkout) are
    left out on purpose: the parent has already imported what it needs from them."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    exe = os.path.realpath(sys.executable)
    paths = {os.path.realpath(p) for p in prefixes}
    paths.add(os.path.dirname(os.path.dirname(exe)))
    kept: list[str] = []
    for p in sorted(paths - {"/"}):
        if p == "/usr" or p.startswith("/usr/"):
            continue  # bound with /usr itself
        if not any(p == k or p.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(p)
    return kept


#: Trees of the minimal root that live under /tmp (set by build_and_enter, read by each job).
TMP_TREES: list[str] = []


def _bind_ro(fd: int, target: str) -> None:
    linux.mount(f"/proc/self/fd/{fd}", target, None, linux.MS_BIND | linux.MS_REC)
    linux.mount(None, target, None, linux.MS_REMOUNT | linux.MS_BIND | RO)


def _touch(path: str) -> None:
    with open(path, "w"):
        pass


def build_and_enter(jobs_mb: int = 64, binds: list[str] | None = None) -> list[str]:
    """Build the minimal root and pivot into it (in our own mount namespace, as root).
    `binds`: host files or directories a user wants jobs to read (a solver's licence), bound
    read-only at the same place. Returns the trees bound from the host. Raises OSError where
    the kernel refuses a step."""
    trees = needed_trees()
    extra = [os.path.realpath(b) for b in binds or () if os.path.exists(b)]
    # A checkout cloned under /tmp (CI does) has its venv there: a job's own tmpfs becomes its
    # /tmp and would hide it, so each job binds these trees back into its tmpfs (read-only).
    TMP_TREES[:] = [t for t in trees + extra if t == "/tmp" or t.startswith("/tmp/")]
    if "/tmp" in TMP_TREES:
        raise OSError(0, "the interpreter lives in /tmp itself")
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    # Open every source before anything is covered (the venv may live under /tmp).
    sources = {p: os.open(p, os.O_PATH) for p in ["/usr", *trees, *extra]}
    etc: dict[str, tuple[str, Any]] = {}  # name -> ("link", target) or ("file", its bytes)
    for name in ETC_FILES:
        path = os.path.join("/etc", name)
        if os.path.islink(path):
            etc[name] = ("link", os.readlink(path))
        elif os.path.isfile(path):
            with open(path, "rb") as fh:
                etc[name] = ("file", fh.read())
    devs = {n: os.open(f"/dev/{n}", os.O_PATH) for n in DEV_NODES if os.path.exists(f"/dev/{n}")}
    links: dict[str, tuple[str, Any]] = {}  # name -> ("link", target) or ("dir", an O_PATH fd)
    for name in TOP_LINKS:
        path = "/" + name
        if os.path.islink(path):
            links[name] = ("link", os.readlink(path))
        elif os.path.isdir(path):
            links[name] = ("dir", os.open(path, os.O_PATH))

    new = "/tmp"  # a mount point in our private namespace; the host's /tmp is not touched
    linux.mount("tmpfs", new, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=8m,mode=0755")
    try:
        os.makedirs(new + "/usr")
        _bind_ro(sources["/usr"], new + "/usr")
        for name, (kind, value) in links.items():
            if kind == "link":
                os.symlink(value, f"{new}/{name}")
            else:
                os.makedirs(f"{new}/{name}")
                _bind_ro(value, f"{new}/{name}")
        for tree in trees:
            os.makedirs(new + tree, mode=0o755, exist_ok=True)
            _bind_ro(sources[tree], new + tree)
        for path in extra:
            if os.path.isdir(path):
                os.makedirs(new + path, mode=0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(new + path), mode=0o755, exist_ok=True)
                _touch(new + path)
            _bind_ro(sources[path], new + path)
        os.makedirs(new + "/etc", mode=0o755)
        for name, (kind, value) in etc.items():
            if kind == "link":
                os.symlink(value, f"{new}/etc/{name}")
            else:
                with open(f"{new}/etc/{name}", "wb") as fh:
                    fh.write(value)
        with open(f"{new}/etc/passwd", "w") as fh:
            fh.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        with open(f"{new}/etc/group", "w") as fh:
            fh.write("root:x:0:\nnogroup:x:65534:\n")
        with open(f"{new}/etc/hosts", "w") as fh:
            fh.write("127.0.0.1 localhost\n::1 localhost\n")
        os.makedirs(new + "/dev/shm", mode=0o755)
        for name, fd in devs.items():
            _touch(f"{new}/dev/{name}")
            linux.mount(f"/proc/self/fd/{fd}", f"{new}/dev/{name}", None, linux.MS_BIND)
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")):
            os.symlink(target, f"{new}/dev/{name}")
        os.symlink("/proc/self/fd/1", f"{new}/dev/stdout")
        os.symlink("/proc/self/fd/2", f"{new}/dev/stderr")
        for d in ("proc", "tmp", JOBS.lstrip("/")):
            os.makedirs(f"{new}/{d}", exist_ok=True)
        os.chmod(f"{new}/tmp", 0o1777)
    finally:
        for fd in [*sources.values(), *devs.values()]:
            os.close(fd)
        for kind, value in links.values():
            if kind == "dir":
                os.close(value)
    os.chdir(new)
    linux.pivot_root(".", ".")  # the old root ends up stacked under the new one...
    linux.umount(".", linux.MNT_DETACH)  # ...and is detached here: the host is gone
    os.chdir("/")
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    linux.mount("proc", "/proc", "proc", flags, "hidepid=2")
    linux.mount("tmpfs", JOBS, "tmpfs", flags, f"size={jobs_mb}m,mode=0700")
    linux.mount(None, "/", None, linux.MS_REMOUNT | RO)
    return trees + extra


#: Host-wide /proc files a job sees replaced (see `proc_masks`).
MASKED_PROC = ("cmdline", "meminfo", "loadavg", "stat", "key-users", "uptime")


def proc_masks(memory_mb: int) -> dict[str, str]:
    """What a job sees in place of the host-wide /proc files that tell it about the host or
    its neighbours: the kernel command line, the host's memory, the load average and thread
    count (two jobs could signal through it), the scheduler's counters, other pools' uids in
    key-users, the uptime. Shaped as the kernel writes them, so that readers (psutil, glibc's
    CPU count, which falls back to /proc/stat without /sys) keep working: the memory is the
    job's own limit, the CPUs are those the job may run on, every counter is zero."""
    kb = memory_mb << 10
    cpus = len(os.sched_getaffinity(0))
    zeros = " 0" * 10
    stat = [f"cpu {zeros}"] + [f"cpu{i}{zeros}" for i in range(cpus)]
    stat += ["intr 0", "ctxt 0", "btime 0", "processes 1", "procs_running 1", "procs_blocked 0"]
    meminfo = [
        f"MemTotal:       {kb} kB",
        f"MemFree:        {kb} kB",
        f"MemAvailable:   {kb} kB",
        "Buffers:               0 kB",
        "Cached:                0 kB",
        "SwapCached:            0 kB",
        "SwapTotal:             0 kB",
        "SwapFree:              0 kB",
        "Shmem:                 0 kB",
    ]
    return {
        "cmdline": "sandbox\n",
        "meminfo": "\n".join(meminfo) + "\n",
        "loadavg": "0.00 0.00 0.00 1/1 1\n",
        "stat": "\n".join(stat) + "\n",
        "key-users": "",
        "uptime": "0.00 0.00\n",
    }


def enter_job_root(jobfs: str, limits: dict) -> None:
    """In a job's own mount namespace (its child, still root): its tmpfs becomes /tmp and
    /dev/shm, /proc shows the job's own pid namespace, and the host-wide /proc files that
    describe the host or other jobs are replaced by neutral ones (`proc_masks`: root's files
    in the job's own tmpfs, outside its /tmp, which the job's uid cannot change)."""
    linux.unshare(linux.CLONE_NEWNS)
    masks = os.path.join(jobfs, "proc")
    os.mkdir(masks, 0o755)
    for name, text in proc_masks(int(limits["memory_mb"])).items():
        with open(os.path.join(masks, name), "w") as fh:
            fh.write(text)
    keep = {tree: os.open(tree, os.O_PATH) for tree in TMP_TREES}
    linux.mount(jobfs + "/tmp", "/tmp", None, linux.MS_BIND)
    for tree, fd in keep.items():  # the venv of a checkout under /tmp (or a bound file), on top
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.makedirs(tree, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(tree), mode=0o755, exist_ok=True)
            _touch(tree)
        _bind_ro(fd, tree)
        os.close(fd)
    linux.mount(jobfs + "/shm", "/dev/shm", None, linux.MS_BIND)
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    linux.mount("proc", "/proc", "proc", flags, "hidepid=2")
    for name in MASKED_PROC:
        linux.mount(f"{masks}/{name}", f"/proc/{name}", None, linux.MS_BIND)
    linux.umount(JOBS, linux.MNT_DETACH)  # other jobs' file systems are not even listed
