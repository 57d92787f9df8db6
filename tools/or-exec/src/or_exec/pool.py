"""The sandbox pool: the library API every tool uses to run model-written code.

    async with Pool(workers=4) as pool:
        result = await pool.run("import pulp\\n...")

A pool starts one warm parent per *tier* of preloaded modules (by default: pulp; pulp + numpy;
pulp + numpy + scipy + sympy). Each job goes to the smallest tier that already imported what the
code imports (forking a 20 MB parent is several times cheaper than forking a 120 MB one). At most
`workers` jobs run at once; each runs under its slot's own uid. A parent that dies is respawned
and the jobs it had in flight are run again (their death was not their doing); a job whose
parent dies on every one of its attempts comes back `killed`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import count
from typing import Any

from .limits import ExecResult, Limits
from .sandbox.jobspace import relative_parts
from .sandbox.parent_handle import ParentDied, ParentHandle, job_env
from .syncloop import SyncFace

log = logging.getLogger("or_exec")

DEFAULT_TIERS: dict[str, tuple[str, ...]] = {
    "python": (),  # code without heavy imports forks the smallest parent
    "pulp": ("pulp",),
    "numpy": ("pulp", "numpy"),
    "full": ("pulp", "numpy", "scipy", "scipy.optimize", "sympy", "networkx"),
    "highs": ("pulp", "numpy", "highspy"),
    "ortools": (
        "numpy",
        "ortools",
        "ortools.linear_solver.pywraplp",
        "ortools.sat.python.cp_model",
    ),
    "pyomo": ("numpy", "highspy", "pyomo", "pyomo.environ", "pyomo.contrib.appsi.solvers"),
}
UID_BASE = 1_000_000
MAX_WORKERS = 128
POOLS_PER_PROCESS = 4  # (pid_max 4194304 * 4 + 3) * 128 + UID_BASE still fits in 31 bits
ATTEMPTS = 3  # runs of one job whose parent keeps dying under it
MAX_CODE = 32 << 20  # characters of code (and prelude) per job
_pool_numbers = itertools.count()


def default_workers() -> int:
    """Twice the cores, at least 4: most model-written jobs are short and CPU-bound, but a
    hostile or stuck one holds its slot until its timeout, and with workers = cores (2 on small
    VMs) one such job would block half the pool. CPU-bound jobs beyond the cores share them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 2
    return min(MAX_WORKERS, max(4, 2 * cores))


def default_uid_base() -> int:
    """A uid range of its own for every pool on the machine (by the owner's pid, and a counter
    within a process): pools of tools running side by side, e.g. `or-gen | or-intervene`, must
    never share a slot uid, or one pool's end-of-job sweep would kill the other's jobs."""
    n = next(_pool_numbers) % POOLS_PER_PROCESS
    return UID_BASE + (os.getpid() * POOLS_PER_PROCESS + n) * MAX_WORKERS


#: An import statement at the start of a line or after `;` / `:` (`try: import numpy`): the
#: module after `from`, or the list after `import`. One pass over the text, linear, never raises.
_IMPORT = re.compile(r"(?:^|[;:])[ \t]*(?:from[ \t]+(\w+)|import[ \t]+([\w., \t]+))", re.MULTILINE)


def imported_roots(code: str) -> set[str]:
    """Top-level module names the code seems to import, by a line scan rather than a parse:
    tier choice must not fail or take long on any text (a 3000-term sum overflows `ast.parse`;
    a 15 MB program takes seconds to parse). Over-counting (an import inside a string) only
    picks a bigger tier, which runs the job as well; relative imports are left out."""
    roots: set[str] = set()
    for match in _IMPORT.finditer(code):
        if match.group(1):
            roots.add(match.group(1))
        else:
            for alias in match.group(2).split(","):
                name = alias.strip().split(".")[0].split()
                if name:
                    roots.add(name[0])
    return roots


def choose_tier(code: str, tiers: dict[str, tuple[str, ...]]) -> str:
    """The first tier whose preloaded modules cover the heavy modules the code imports (the
    tiers go from small to large); if none covers them all, the one that covers the most."""
    order = list(tiers)
    roots = imported_roots(code)
    known = {m.split(".")[0] for mods in tiers.values() for m in mods}
    needed = roots & known
    covered = {name: {m.split(".")[0] for m in tiers[name]} for name in order}
    for name in order:
        if needed <= covered[name]:
            return name
    return max(order, key=lambda name: len(needed & covered[name]))


class Pool:
    """A local sandbox pool (see the module docstring)."""

    def __init__(
        self,
        workers: int | None = None,
        limits: Limits | None = None,
        tiers: dict[str, tuple[str, ...]] | None = None,
        uid_base: int | None = None,
        disk_mb: int = 256,
        job_namespaces: bool = True,
    ):
        """`disk_mb`: each job's own tmpfs. `job_namespaces=False` turns off the per-job pid,
        network and IPC namespaces (jobs of a parent then share them, and leftovers are swept by
        uid): only for kernels where they misbehave."""
        self.workers = workers or default_workers()
        self.limits = limits or Limits()
        self.tiers = dict(tiers or DEFAULT_TIERS)
        if self.workers > MAX_WORKERS:
            raise ValueError(f"at most {MAX_WORKERS} workers per pool")
        self.uid_base = default_uid_base() if uid_base is None else uid_base
        self.disk_mb = disk_mb
        self._parents = {
            name: ParentHandle(name, mods, disk_mb, job_namespaces)
            for name, mods in self.tiers.items()
        }
        for parent in self._parents.values():
            parent.on_death = self._on_death
        self._free: asyncio.Queue[int] | None = None
        self._dirty: set[int] = set()
        self._running: dict[int, tuple[ParentHandle, int]] = {}  # slot -> (parent, job id)
        self._ids = count(1)
        self._closing = False
        self.stats: dict[str, Any] = {
            "jobs": 0,
            "by_status": {},
            "by_tier": {},
            "respawns": 0,
            "retries": 0,
        }

    def _on_death(self, tier: str, dirty: Iterable[int]) -> None:
        self._dirty.update(dirty)
        if self._closing:
            return
        self.stats["respawns"] += 1
        log.warning("sandbox parent %s died; it will be restarted", tier)

    async def start(self, tiers: Iterable[str] | None = None) -> dict[str, str]:
        """Start the warm parents (all tiers by default) and return the active protections."""
        if self._free is None:
            self._free = asyncio.Queue()
            for slot in range(self.workers):
                self._free.put_nowait(slot)
        infos = await asyncio.gather(*(self._parents[t].start() for t in (tiers or self.tiers)))
        protections = infos[0]["protections"]
        for info in infos:
            if info.get("failed"):
                log.warning("tier %s could not preload %s", info["tier"], ", ".join(info["failed"]))
        return protections

    async def __aenter__(self) -> Pool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def run(
        self,
        code: str,
        limits: Limits | None = None,
        prelude: Sequence[str] = (),
        *,
        stdin: str | None = None,
        files: Mapping[str, bytes] | None = None,
        fetch: Sequence[str] = (),
    ) -> ExecResult:
        """Run `code` (after replaying `prelude` blocks quietly) and return its result.

        `stdin` is the program's standard input (else /dev/null); `files` are put in its
        working directory (relative names) before it starts; the files named in `fetch` are
        read from there after it ended and come back in `result.files` (base64; None for one
        that is missing, not a regular file, or over the 16 MiB all fetched files may take)."""
        if self._free is None:
            await self.start(tiers=[])
        assert self._free is not None
        limits = limits or self.limits
        problem = None
        for text in (code, *prelude):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:  # e.g. a lone surrogate: no file can hold it
                problem = f"the code is not valid unicode ({exc.reason})"
        if sum(map(len, (code, *prelude))) > MAX_CODE:
            problem = f"the code is longer than {MAX_CODE >> 20} MiB"
        if problem is not None:
            return ExecResult("error", None, "", f"SyntaxError: {problem}\n", 0.0, message=problem)
        extra: dict[str, Any] = {}
        try:
            for name in (*(files or {}), *fetch):
                relative_parts(name)
        except ValueError as exc:
            return ExecResult("error", None, "", f"{exc}\n", 0.0, message=str(exc))
        if stdin is not None:
            extra["stdin"] = stdin
        if files:
            extra["files"] = {k: base64.b64encode(v).decode() for k, v in files.items()}
        if fetch:
            extra["fetch"] = list(fetch)
        try:
            text = "\n".join([*prelude, code])
            if len(text) > 1 << 18:  # a long program is scanned off the event loop
                tier = await asyncio.to_thread(choose_tier, text, self.tiers)
            else:
                tier = choose_tier(text, self.tiers)
        except Exception as exc:  # never the tool's failure: that job's error
            problem = f"the sandbox could not prepare the job: {exc!r}"
            return ExecResult("error", None, "", problem + "\n", 0.0, message=problem)
        slot = await self._free.get()
        held: asyncio.Future | None = None
        try:
            result = await self._attempts(code, limits, prelude, tier, slot, extra)
        except asyncio.CancelledError:
            # the caller went away (a server's client disconnected): kill the job, and keep
            # its slot until the parent says it is over (its uid and cgroups are still in use)
            running = self._running.pop(slot, None)
            if running is not None:
                held = running[0].cancel(running[1])
            raise
        finally:
            self._running.pop(slot, None)
            if held is None:
                self._free.put_nowait(slot)
            else:
                held.add_done_callback(lambda fut: self._cancelled(fut, slot, tier))
        self._count(result, tier)
        return result

    def _cancelled(self, fut: asyncio.Future, slot: int, tier: str) -> None:
        """A cancelled job is over: its slot is free again, and it counts in the stats."""
        assert self._free is not None  # a job ran, so the pool has started
        self._free.put_nowait(slot)
        if not fut.cancelled() and fut.exception() is None:
            self._count(fut.result(), tier)

    def _count(self, result: ExecResult, tier: str) -> None:
        self.stats["jobs"] += 1
        self.stats["by_status"][result.status] = self.stats["by_status"].get(result.status, 0) + 1
        self.stats["by_tier"][tier] = self.stats["by_tier"].get(tier, 0) + 1

    async def _attempts(
        self,
        code: str,
        limits: Limits,
        prelude: Sequence[str],
        tier: str,
        slot: int,
        extra: dict[str, Any],
    ) -> ExecResult:
        for _ in range(ATTEMPTS):
            job_id = next(self._ids)
            message = {
                "op": "run",
                "job": job_id,
                "code": code,
                "prelude": list(prelude),
                "uid": self.uid_base + slot,
                "limits": limits.to_dict(),
                "env": job_env(),
                "sweep_first": slot in self._dirty,
                **extra,
            }
            self._dirty.discard(slot)
            parent = self._parents[tier]
            self._running[slot] = (parent, job_id)
            # The parent bounds every wait of its own; this guard only catches a parent that
            # stopped working altogether: it is killed, and the job runs again on a new one.
            guard = limits.timeout + 30
            try:
                return await asyncio.wait_for(parent.submit(job_id, slot, message), guard)
            except TimeoutError:
                log.warning(
                    "sandbox parent %s did not answer in %.0f s; restarting it", tier, guard
                )
                parent.kill()
            except (ParentDied, ConnectionError):
                pass
            self._dirty.add(slot)
            self.stats["retries"] += 1
        return ExecResult(
            "killed",
            None,
            "",
            "",
            0.0,
            tier=tier,
            message=f"the sandbox parent died on each of {ATTEMPTS} attempts to run this job",
        )

    def parent_pids(self) -> dict[str, int | None]:
        return {name: (p.proc.pid if p.proc else None) for name, p in self._parents.items()}

    async def close(self) -> None:
        self._closing = True
        await asyncio.gather(*(p.close() for p in self._parents.values()))


class SyncPool(SyncFace):
    """A Pool for synchronous callers (e.g. RL reward workers): its event loop runs in a thread."""

    def __init__(self, **kwargs: Any):
        super().__init__("or-exec-pool")
        self.pool = Pool(**kwargs)
        self.protections = self._call(self.pool.start())
