"""What the sandbox parent keeps per job, and the file system it makes for each."""

from __future__ import annotations

import os
import secrets
import stat
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
    cwd: str = ""  # its working directory (for files the client fetches after the end)
    fetch: list[str] = field(default_factory=list)
    fetched: dict[str, bytes | None] | None = None


def make_jobfs(
    jobs_root: str,
    code: str,
    spec: dict[str, Any],
    uid: int | None,
    disk_mb: int,
    remove: Callable[[str], None],
    files: dict[str, bytes] | None = None,
    stdin: bytes | None = None,
) -> tuple[str, str]:
    """A job's own file system, `<jobs_root>/<random>`: as root a size- and inode-limited tmpfs,
        holding tmp/ (its /tmp, with its working directory tmp/<random> and main.py), shm/, and
        job.json (its limits, environment and prelude: root-only, read and removed by the job's
        child before it drops root), the caller's `files` in the working directory and `stdin` (the
    job's standard input; /dev/null without it). Returns (path, name). On failure, what was made is handed to
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
        owned = [cwd, main]
        for rel, data in (files or {}).items():
            parts = relative_parts(rel)
            where = cwd
            for part in parts[:-1]:
                where = os.path.join(where, part)
                if not os.path.isdir(where):
                    os.mkdir(where, 0o755)
                    owned.append(where)
            path = os.path.join(where, parts[-1])
            with open(path, "wb") as fh:
                fh.write(data)
            owned.append(path)
        if stdin is not None:
            with open(os.path.join(jobfs, "stdin"), "wb") as fh:
                fh.write(stdin)
        if uid is not None:
            for path in owned:
                os.chown(path, uid, uid)
    except BaseException:
        remove(jobfs)
        raise
    return jobfs, name


def relative_parts(name: str) -> list[str]:
    """The parts of a file name a client may use inside a job's directory: relative, no `..`,
    no empty or `.` parts, no NUL. Raises ValueError otherwise."""
    parts = name.split("/")
    if not name or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"file names must be relative paths inside the job's directory: {name!r}")
    if name == "main.py":
        raise ValueError("main.py is the program itself")
    return parts


def fetch_files(cwd: str, names: list[str], cap: int) -> dict[str, bytes | None]:
    """Read the files a client asked for from a finished job's directory, never following a
    link (the job may have planted one): each path is walked part by part with O_NOFOLLOW,
    only regular files are read, at most `cap` bytes in all. A file that is missing, not a
    regular file or over what is left of the cap comes back None."""
    out: dict[str, bytes | None] = {}
    left = cap
    for name in names:
        out[name] = None
        fds: list[int] = []
        try:
            parts = relative_parts(name)
            fds.append(os.open(cwd, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW))
            for part in parts[:-1]:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                fds.append(os.open(part, flags, dir_fd=fds[-1]))
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
            fd = os.open(parts[-1], flags, dir_fd=fds[-1])
            fds.append(fd)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > left:
                continue
            data = os.read(fd, st.st_size + 1)
            if len(data) <= left:
                out[name] = data
                left -= len(data)
        except (OSError, ValueError):
            continue
        finally:
            for fd in fds:
                os.close(fd)
    return out
