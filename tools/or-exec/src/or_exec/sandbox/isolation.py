"""Set up the sandbox parent's world once, before it forks any job.

As root, the parent moves into its own mount and network namespaces and, where the kernel
allows, `pivot_root`s into a minimal root (see rootfs.py): nothing of the host is visible but
read-only binds of the interpreter, its libraries and the virtual environment. Each job then
gets a size- and inode-limited tmpfs of its own, its own mount, pid, network and IPC
namespaces, a per-slot unprivileged uid and a seccomp filter.

Where the minimal root is impossible, the older layout is used: every existing mount is made
read-only, `/tmp`, `/var/tmp` and `/dev/shm` are fresh tmpfs, `/proc` hides other users'
processes, and directories only root may enter (e.g. `/root`, where pyenv puts the
interpreter) are replaced by a tmpfs exposing just the interpreter and the venv.

Where a step is impossible (not root, no namespaces), it is skipped and reported: `protections`
says what is active, and the pool warns about anything missing.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile

from . import linux, rootfs

PSEUDO_FS = ("/proc", "/sys", "/dev")


def _traversable_by_others(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IXOTH)


def _needed_paths() -> list[str]:
    """Directories a job's uid must be able to read: interpreter, stdlib, venv, sys.path."""
    candidates = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
    }
    candidates.update(p for p in sys.path if p and os.path.isdir(p))
    paths = sorted({os.path.realpath(p) for p in candidates} - {"/"})
    kept: list[str] = []
    for p in paths:  # sorted, so a parent comes before its children
        if not any(p == k or p.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(p)
    return kept


def _hidden_root(path: str) -> str | None:
    """The shallowest ancestor of `path` that other users cannot traverse, if any."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        ancestor = "/" + "/".join(parts[:i])
        if not _traversable_by_others(ancestor):
            return ancestor
    return None


def _mounts() -> list[tuple[str, set[str]]]:
    """(mount point, options) for each mount, outermost first."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            out.append((point, set(fields[5].split(","))))
    return out


def _under(path: str, roots: tuple[str, ...] | list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _remount_readonly(skip: list[str], warnings: list[str]) -> None:
    for point, opts in _mounts():
        if _under(point, PSEUDO_FS) or _under(point, skip):
            continue
        flags = linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY
        flags |= linux.MS_NOSUID if "nosuid" in opts else 0
        flags |= linux.MS_NODEV if "nodev" in opts else 0
        flags |= linux.MS_NOEXEC if "noexec" in opts else 0
        try:
            linux.mount(None, point, None, flags)
        except OSError as exc:
            warnings.append(f"could not make {point} read-only: {exc}")


def isolate(disk_mb: int, binds: list[str] | None = None) -> tuple[str, bool, dict[str, str]]:
    """Enter new namespaces and build the job filesystem.

    Returns (where job directories go, whether the minimal root is in place, protections)."""
    protections: dict[str, str] = {}
    if os.geteuid() != 0:
        reason = (
            "off: not root (run as root, e.g. in the container, for namespaces and per-slot uids)"
        )
        for name in (
            "minimal root",
            "network namespace",
            "mount namespace",
            "read-only filesystem",
            "private /tmp",
            "hidepid /proc",
            "per-slot uid",
        ):
            protections[name] = reason
        return tempfile.mkdtemp(prefix="or-exec-"), False, protections
    try:
        linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWNET | linux.CLONE_NEWIPC)
    except OSError as exc:
        for name in (
            "minimal root",
            "network namespace",
            "mount namespace",
            "read-only filesystem",
            "private /tmp",
            "hidepid /proc",
        ):
            protections[name] = f"off: unshare failed ({exc.strerror})"
        protections["per-slot uid"] = "on"
        root = tempfile.mkdtemp(prefix="or-exec-")
        os.chmod(root, 0o711)
        return root, False, protections
    protections["network namespace"] = "on (no interfaces: no network)"
    protections["mount namespace"] = "on"
    protections["per-slot uid"] = "on"
    try:
        trees = rootfs.build_and_enter(binds=binds or [])
    except OSError as exc:
        protections["minimal root"] = f"off: {exc} (the host is visible read-only)"
    else:
        protections["minimal root"] = (
            "on (pivot_root into a tmpfs; visible read-only: /usr, " + ", ".join(trees) + ")"
        )
        protections["read-only filesystem"] = "on (everything but the job's own tmpfs)"
        protections["private /tmp"] = (
            f"on (a tmpfs per job, {disk_mb} MiB, {rootfs.JOB_INODES} inodes, random name)"
        )
        protections["hidepid /proc"] = "on (a /proc of the job's own pid namespace)"
        return rootfs.JOBS, True, protections
    return _legacy(disk_mb, protections), False, protections


def _legacy(disk_mb: int, protections: dict[str, str]) -> str:
    """The host, read-only, with private /tmp and hidepid /proc (no minimal root possible)."""
    warnings: list[str] = []
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)

    needed = _needed_paths()
    tmpfs_points = ["/tmp", "/var/tmp", "/dev/shm"]
    # Paths the job must read but that a tmpfs will cover: under a directory only root may
    # enter (e.g. /root, where pyenv lives), or under /tmp itself (a checkout in /tmp).
    cover: dict[str, list[str]] = {}
    for p in needed:
        point = next((t for t in tmpfs_points if _under(p, [t])), None) or _hidden_root(p)
        if point is not None:
            cover.setdefault(point, []).append(p)
    fds = {p: os.open(p, os.O_PATH) for ps in cover.values() for p in ps}

    _remount_readonly(skip=[], warnings=warnings)
    protections["read-only filesystem"] = (
        "on" if not warnings else "partial: " + "; ".join(warnings)
    )

    flags = linux.MS_NOSUID | linux.MS_NODEV
    linux.mount("tmpfs", "/tmp", "tmpfs", flags, f"size={disk_mb}m,mode=0711")
    for point in tmpfs_points[1:]:
        if os.path.isdir(point):
            linux.mount("tmpfs", point, "tmpfs", flags, "size=64m,mode=0711")
    protections["private /tmp"] = f"on (a tmpfs per job, {disk_mb} MiB, random name)"

    for point, paths in cover.items():
        if point not in tmpfs_points:
            linux.mount("tmpfs", point, "tmpfs", flags, "size=1m,mode=0755")
        for p in paths:
            os.makedirs(p, mode=0o755, exist_ok=True)
            linux.mount(f"/proc/self/fd/{fds[p]}", p, None, linux.MS_BIND | linux.MS_REC)
            linux.mount(None, p, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY)
        if point not in tmpfs_points:
            linux.mount(None, point, None, linux.MS_REMOUNT | linux.MS_RDONLY | flags, "mode=0755")
    for fd in fds.values():
        os.close(fd)
    if cover:
        shown = "; ".join(f"{r} shows only {', '.join(ps)} (read-only)" for r, ps in cover.items())
        protections["interpreter exposure"] = "on: " + shown

    try:
        linux.mount(
            "proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "hidepid=2"
        )
        protections["hidepid /proc"] = "on (jobs see only their own processes)"
    except OSError as exc:
        protections["hidepid /proc"] = f"off: {exc.strerror}"
    return "/tmp"
