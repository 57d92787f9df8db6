"""The sandbox parent's entry point: started once per tier of preloaded modules, the parent sets
up its isolation (isolation.py), starts its helper process (helper.py), imports the tier's
modules and then runs its event loop (parent_loop.py), which has a template fork one child per
job.

Run as `python -m or_exec.sandbox.parent_main` by the pool (parent_handle.py) with a minimal
environment and one end of a socketpair on fd 3. Messages both ways are 4-byte big-endian
length + JSON (wire.py).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import socket
import sys

from . import cgroups, linux, seccomp
from .helper import Helper
from .isolation import isolate
from .jobspace import Holder
from .parent_loop import SandboxParent
from .rootfs import MASKED_PROC
from .template import Template
from .wire import send


def _warm_up() -> None:
    """Pay one-time lazy initialisations here, once, instead of in every job."""
    import random
    import tempfile

    random.seed()
    try:
        tempfile.gettempdir()
    except FileNotFoundError:  # in the minimal root only jobs have a writable /tmp
        pass
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # the first seeding costs ~15 ms
    if "pulp" in sys.modules:
        try:
            sys.modules["pulp"].PULP_CBC_CMD(msg=False).available()
        except Exception:
            pass


def _seccomp_works() -> bool:
    """Install the filter in a throwaway child: only report it if the kernel takes it."""
    if seccomp.PROGRAM is None:
        return False
    pid = os.fork()
    if pid == 0:
        try:
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
            seccomp.install()
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True, help="our end of the pool's socketpair")
    parser.add_argument("--tier", required=True)
    parser.add_argument("--modules", default="")
    parser.add_argument("--disk-mb", type=int, default=256, help="each job's own tmpfs")
    parser.add_argument("--no-job-namespaces", action="store_true")
    parser.add_argument("--solvers", default="", help="what the pool says of the solver env")
    parser.add_argument("--bind", default="", help="host paths bound read-only into jobs' root")
    args = parser.parse_args()
    sock = socket.socket(fileno=args.fd)
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the pool
    # made while the host's cgroup file system is still visible, used through fds from then on
    groups, no_groups = cgroups.setup(f"or-exec-{os.getpid()}")
    binds = [p for p in args.bind.split(":") if p]
    jobs_root, own_root, protections = isolate(args.disk_mb, binds)
    if args.solvers:
        protections["solver environment"] = args.solvers
    if binds:
        protections["host files for jobs"] = "on (read-only: " + ", ".join(binds) + ")"
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)  # orphans of jobs come back to us to be reaped
    root = os.geteuid() == 0
    # forked before the heavy imports: its forks stay cheap
    helper = Helper(holders=root)
    spares, holders_note = [], "off: not root"
    if args.no_job_namespaces:
        holders_note = "off: turned off by the pool's configuration"
    elif root:
        helper.request_holder()
        kind, value, fds = helper.receive()
        if kind == "H":
            spares.append(Holder(value, fds[0], fds[1]))
        else:
            holders_note = "off: the kernel refused new pid/network/IPC namespaces"
    seccomp_ok = _seccomp_works()
    protections.update(describe(bool(spares), holders_note, seccomp_ok, root))
    protections["host-wide /proc files"] = (
        "on (each job sees neutral " + ", ".join(MASKED_PROC) + ": its own memory limit, zeros)"
        if own_root
        else "off: only in the minimal root (the host's are visible)"
    )
    if groups is not None:
        protections.update(groups.describe())
    else:
        fallback = "off: {} (falls back to per-process rlimits: {})"
        protections["memory per job"] = fallback.format(no_groups, "RLIMIT_AS for each process")
        protections["CPU per job"] = fallback.format(no_groups, "RLIMIT_CPU, RLIMIT_NPROC")
    loaded, failed = [], {}
    for name in filter(None, args.modules.split(",")):
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # a missing optional module must not kill the pool
            failed[name] = repr(exc)
    _warm_up()
    gc.collect()
    gc.freeze()  # a child's first collection would otherwise touch (and copy) every warm page
    # Jobs are forked from a copy of this process made now, before any job arrives: one that
    # never holds a job's code, output or result (template.py).
    template = Template()
    send(
        sock,
        {
            "ready": True,
            "pid": os.getpid(),
            "tier": args.tier,
            "modules": loaded,
            "failed": failed,
            "protections": protections,
            "cgroups": groups.paths if groups is not None else [],
        },
    )
    SandboxParent(
        sock,
        jobs_root,
        own_root,
        args.tier,
        helper=helper,
        template=template,
        cgroups=groups,
        holders_ok=bool(spares),
        seccomp_ok=seccomp_ok,
        disk_mb=args.disk_mb,
        spares=spares,
    ).run()


def describe(holders: bool, holders_note: str, seccomp_ok: bool, root: bool) -> dict[str, str]:
    """The per-job protections, as `or-exec doctor` shows them."""
    out = {}
    if holders:
        out["pid namespace"] = "on (one per job: it sees only its own processes)"
        out["network namespace"] = "on (one per job: no network, no shared abstract sockets)"
        out["IPC namespace"] = "on (one per job: no shared SysV memory or queues)"
        out["UTS namespace"] = "on (one per job: its host name is 'sandbox')"
        out["kill everything at job end"] = "on (the job's pid namespace is torn down)"
    else:
        out["pid namespace"] = holders_note
        out["UTS namespace"] = holders_note + " (jobs see the host's name)"
        out["IPC namespace"] = (
            f"partial: one per sandbox parent, shared by its jobs (per job {holders_note})"
            if root
            else holders_note
        )
        out["kill everything at job end"] = (
            "on (per-uid sweep by root, including setsid escapes)"
            if root
            else "partial: process group only (setsid escapes survive without root)"
        )
    out["seccomp"] = (
        "on (no new namespaces, io_uring, userfaultfd, keyrings, bpf, perf events, inotify, "
        "fadvise, readahead, RWF_NOWAIT)"
        if seccomp_ok
        else "off: the kernel refused the filter or the architecture is unknown"
    )
    out["keyrings"] = "on (a fresh session keyring, the uid's keyrings cleared at job start)"
    out["rlimits"] = "on (address space, CPU time, file size, open files, processes)"
    out["result channel"] = "on (closed before the job's code runs; statuses are measured)"
    return out


if __name__ == "__main__":
    main()
