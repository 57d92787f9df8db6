"""What the sandbox parent keeps per job, and the file system it makes for each."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import linux, rootfs
from .wire import Capture


@dataclass
class Holder:
    pid: int
    pidfd: int
    ctl_w: int

    def close(self) -> None:
        for fd in (self.pidfd, self.ctl_w):
            try:
                os.close(fd)
            except OSError:
                pass


@dataclass
class Job:
    id: Any
    uid: int | None
    limits: dict[str, Any]
    jobfs: str
    started: float
    deadline: float
    out: Capture
    err: Capture
    pid: int = 0
    pidfd: int = -1  # the job's first process (forked by the template, not by us)
    cgroup: str | None = None  # its slot's cgroups, when memory and CPU are per job
    oom_base: int = 0  # the slot's OOM kill count before the job
    holder: Holder | None = None
    fork_seconds: float = 0.0
    fds: dict[int, str] = field(default_factory=dict)  # fd -> "out" | "err" | "info"
    info: bytearray = field(default_factory=bytearray)
    exit_status: int | None = None
    cpu: float = 0.0
    ended: float | None = None
    reason: str | None = None  # why the parent killed it: timeout | flood
    world_gone: bool = False  # every process of the job is dead
    finish_by: float | None = None


def make_jobfs(
    jobs_root: str,
    code: str,
    spec: dict[str, Any],
    uid: int | None,
    disk_mb: int,
    remove: Callable[[str], None],
) -> tuple[str, str]:
    """A job's own file system, `<jobs_root>/<random>`: as root a size- and inode-limited tmpfs,
    holding tmp/ (its /tmp, with its working directory tmp/<random> and main.py), shm/, and
    job.json (its limits, environment and prelude: root-only, read and removed by the job's
    child before it drops root). Returns (path, name). On failure, what was made is handed to
    `remove` and the error raised."""
    name = secrets.token_hex(8)
    jobfs = os.path.join(jobs_root, name)
    os.mkdir(jobfs, 0o700)
    try:
        if os.geteuid() == 0:
            opts = f"size={disk_mb}m,nr_inodes={rootfs.JOB_INODES},mode=0755"
            linux.mount("tmpfs", jobfs, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, opts)
        for sub in ("tmp", "shm"):
            os.mkdir(os.path.join(jobfs, sub))
            os.chmod(os.path.join(jobfs, sub), 0o1777)
        cwd = os.path.join(jobfs, "tmp", name)
        os.mkdir(cwd, 0o700)
        main = os.path.join(cwd, "main.py")
        with open(main, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(code)
        fd = os.open(os.path.join(jobfs, "job.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as fh:
            fh.write(orjson.dumps(spec))
        if uid is not None:
            os.chown(cwd, uid, uid)
            os.chown(main, uid, uid)
    except BaseException:
        remove(jobfs)
        raise
    return jobfs, name
