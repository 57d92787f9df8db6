"""Memory and CPU control groups of one job each (one slot each, which runs one job at a time).

RLIMIT_AS and RLIMIT_CPU are per process: six children of a job each stay under the memory
cap, and memfd or tmpfs pages are no process's address space at all; sixty busy children
share the CPU with a neighbouring job as sixty processes against one. A control group per job
counts every page the job's processes charge (anonymous, page cache, memfd and tmpfs alike)
against its memory limit, the kernel's OOM killer ends the job inside its own group when it
goes over, and the CPU scheduler gives each job one equal share, however many processes it
runs.

The sandbox parent makes a cgroup of its own, `or-exec-<pid>`, under the cgroup it was started
in (cgroup v1: in the memory and cpu hierarchies; cgroup v2: one directory, with the memory and
cpu controllers enabled where the host delegates them), before it leaves the host's mount
namespace, and keeps a directory fd of each: every later step works through those fds from
inside the minimal root. Each slot (one job at a time) gets `slot-<uid>` in it, with a template
process of its own moved in once (template.py): the slot's jobs are born in its cgroups. Before
a job starts, the slot's memory limit is set to the job's; after it ended, the OOM kill counter
says whether the kernel ended one of its processes, and the job's tmpfs is gone before the slot
takes another job (its pages were charged to the slot). The pool removes the parent's cgroups
when the parent has ended.

Where neither version offers the controllers (no cgroup file system, not root, a v2 host that
does not delegate them), `setup` says why and the sandbox falls back to per-process rlimits,
loudly: `or-exec doctor` and the pool's warnings show it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

V1_CONTROLLERS = ("memory", "cpu")


@dataclass
class Cgroups:
    version: int
    fds: dict[str, int]  # controller ("memory", "cpu"; "unified" for v2) -> the parent's dir fd
    paths: list[str]  # the parent's own cgroup directories on the host (for the pool's cleanup)
    cpu_shares: int = 1024
    created: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, str]:
        where = "cgroup v1 memory + cpu" if self.version == 1 else "cgroup v2"
        return {
            "memory per job": f"on ({where}: every page of every process of the job, memfd "
            "and tmpfs included, against its memory limit; OOM score 1000)",
            "CPU per job": f"on ({where}: one equal CPU share per job, whatever it forks)",
        }

    def make(self, name: str) -> list[int]:
        """A slot's cgroups: one writable `cgroup.procs` fd per controller."""
        fds: list[int] = []
        try:
            for parent in self.fds.values():
                try:
                    os.mkdir(name, 0o755, dir_fd=parent)
                except FileExistsError:  # a slot template that died is being replaced
                    pass
                fds.append(os.open(f"{name}/cgroup.procs", os.O_WRONLY, dir_fd=parent))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def limit_memory(self, name: str, memory_bytes: int) -> None:
        """Set the memory limit of the slot's next job."""
        parent = self.fds.get("memory", self.fds.get("unified"))
        assert parent is not None
        if self.version == 1:
            # memory + swap gets the same limit, so that swap cannot extend it (the file is
            # absent without swap accounting); v1 wants memory <= memory + swap at every step,
            # so the second limit is lifted first
            memsw = f"{name}/memory.memsw.limit_in_bytes"
            _write(parent, memsw, -1, optional=True)
            _write(parent, f"{name}/memory.limit_in_bytes", memory_bytes)
            _write(parent, memsw, memory_bytes, optional=True)
        else:
            _write(parent, f"{name}/memory.max", memory_bytes)
            _write(parent, f"{name}/memory.swap.max", 0, optional=True)

    def oom_kills(self, name: str) -> int:
        """How many processes of the group the kernel's OOM killer has ended so far."""
        parent = self.fds.get("memory", self.fds.get("unified"))
        if parent is None:
            return 0
        what = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            fd = os.open(f"{name}/{what}", os.O_RDONLY, dir_fd=parent)
            with open(fd, "rb") as fh:
                text = fh.read().decode()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0


def _write(dir_fd: int, path: str, value: int | str, optional: bool = False) -> None:
    try:
        fd = os.open(path, os.O_WRONLY, dir_fd=dir_fd)
    except FileNotFoundError:
        if optional:
            return
        raise
    try:
        os.write(fd, str(value).encode())
    except OSError:
        if not optional:
            raise
    finally:
        os.close(fd)


def _own_cgroups() -> dict[str, str]:
    """Our cgroup per v1 controller, and "" -> our v2 cgroup (from /proc/self/cgroup)."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                out[name] = path
    return out


def _mounts() -> tuple[dict[str, str], str | None]:
    """Mount points of the v1 hierarchies (controller -> point) and of the v2 one."""
    v1: dict[str, str] = {}
    v2 = None
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            point = fields[4].replace("\\040", " ")
            if rest[0] == "cgroup2" and v2 is None:
                v2 = point
            elif rest[0] == "cgroup":
                for opt in rest[2].split(","):
                    v1.setdefault(opt, point)
    return v1, v2


def setup(tag: str) -> tuple[Cgroups | None, str]:
    """Make the sandbox parent's own cgroup(s) and open them. (None, why) where impossible."""
    if os.geteuid() != 0:
        return None, "not root"
    try:
        own = _own_cgroups()
        v1, v2 = _mounts()
    except (OSError, ValueError, IndexError) as exc:
        return None, f"cannot read the host's cgroups ({exc})"
    reasons = []
    if all(c in v1 and c in own for c in V1_CONTROLLERS):
        try:
            return _setup_v1(tag, v1, own), ""
        except OSError as exc:
            reasons.append(f"cgroup v1: {exc.strerror or exc}")
    else:
        reasons.append("cgroup v1: no memory and cpu hierarchies")
    if v2 is not None and "" in own:
        try:
            return _setup_v2(tag, v2, own[""]), ""
        except OSError as exc:
            reasons.append(f"cgroup v2: {exc.strerror or exc}")
    else:
        reasons.append("cgroup v2: not mounted")
    return None, "; ".join(reasons)


def _sweep_stale(parent: str) -> None:
    """Remove what sandbox parents that died without their pool's cleanup left in `parent`
    (`or-exec-<pid>` of a pid that no longer runs)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid = name[len("or-exec-") :]
        if not name.startswith("or-exec-") or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            remove_tree(os.path.join(parent, name))
        except OSError:
            pass


def _setup_v1(tag: str, mounts: dict[str, str], own: dict[str, str]) -> Cgroups:
    fds: dict[str, int] = {}
    paths: list[str] = []
    try:
        for controller in V1_CONTROLLERS:
            _sweep_stale(mounts[controller] + own[controller])
            path = os.path.join(mounts[controller] + own[controller], tag)
            os.mkdir(path, 0o755)
            paths.append(path)
            fds[controller] = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        # the parent's jobs weigh together as much as as many processes as the machine has
        # cores, twice (each job one process's share against the host's processes)
        shares = 1024 * 2 * (os.cpu_count() or 1)
        _write(fds["cpu"], "cpu.shares", shares)
    except BaseException:
        _close(fds, paths)
        raise
    return Cgroups(1, fds, paths)


def _setup_v2(tag: str, mount: str, own: str) -> Cgroups:
    _sweep_stale(mount + own)
    path = os.path.join(mount + own, tag)
    os.mkdir(path, 0o755)
    fds = {"unified": os.open(path, os.O_RDONLY | os.O_DIRECTORY)}
    try:
        with open(os.path.join(path, "cgroup.controllers")) as fh:
            available = fh.read().split()
        missing = [c for c in V1_CONTROLLERS if c not in available]
        if missing:
            raise OSError(0, f"the host does not delegate {', '.join(missing)} to {mount + own}")
        _write(fds["unified"], "cgroup.subtree_control", "+memory +cpu")
    except BaseException:
        _close(fds, [path])
        raise
    return Cgroups(2, fds, [path])


def _close(fds: dict[str, int], paths: list[str]) -> None:
    for fd in fds.values():
        os.close(fd)
    for path in paths:
        try:
            os.rmdir(path)
        except OSError:
            pass


def remove_tree(path: str) -> None:
    """Remove a sandbox parent's cgroup and whatever job cgroups are left in it (the pool calls
    this once the parent has ended)."""
    try:
        entries = [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for sub in entries:
        remove_tree(sub)
    try:
        os.rmdir(path)
    except OSError:
        pass
