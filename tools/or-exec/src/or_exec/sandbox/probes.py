"""The probe jobs `or-exec doctor` runs: each protection proven by a job that tries to break it.

Each probe is code run as an ordinary sandboxed job (with its own limits where the protection is
a limit); the doctor prints its status and output. The heap scan (`heap_scan_code`) is also what
the tests use to prove that no job can find another job's code or output in its own memory.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

SIMPLE_PROBES = {
    # {port}: a listener the doctor opens on this machine's loopback; no outside address is probed.
    "no network": "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1); print('REACHED the host')\nexcept OSError as e:\n    print('blocked:', e)",
    "no caller environment": "import os\nprint(sorted(os.environ))",
    "read-only outside the job directory": "try:\n    open('/etc/or-exec-probe', 'w'); print('WROTE')\nexcept OSError as e:\n    print('blocked:', e)",
    "unprivileged uid": "import os\nprint('uid', os.getuid())",
    "own processes only": "import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]), 'visible processes')",
    # {here}: this very file, on the host; a job must not see it
    "host files hidden": "import os\nprint('SEEN' if os.path.exists({here!r}) else 'hidden:', {here!r})",
    "no user namespaces": "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.unshare(0x10000000)\nprint('CREATED' if r == 0 else f'blocked: errno {ctypes.get_errno()}')",
    # the idiom models write most: PuLP's default solver object, built before the fork
    "default solver (prob.solve())": "import pulp\nm = pulp.LpProblem('probe', pulp.LpMaximize)\nx = pulp.LpVariable('x', 0, 3)\nm += x\nm.solve()\nprint(pulp.LpStatus[m.status], 'x =', x.varValue)",
}


#: The program a job runs to search its whole address space (every readable mapping, through
#: /proc/self/mem) for other jobs' markers. Each marker is given as two hex halves and matched
#: half by half, so that the whole marker never exists in the scanning job's own memory.
_SCAN = """
import ctypes
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self/mem becomes ours to read
halves = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in {pairs!r}]
found = set()
with open('/proc/self/maps') as fh:
    maps = fh.read().splitlines()
mem = open('/proc/self/mem', 'rb', buffering=0)
scanned = 0
for line in maps:
    fields = line.split()
    if 'r' not in fields[1] or line.endswith(('[vvar]', '[vsyscall]', '[vvar_vclock]')):
        continue
    lo, hi = (int(x, 16) for x in fields[0].split('-'))
    pos = lo
    while pos < hi:
        n = min(hi - pos, 1 << 20)
        try:
            mem.seek(pos)
            chunk = mem.read(n)
        except OSError:
            break
        scanned += len(chunk)
        for i, (a, b) in enumerate(halves):
            j = chunk.find(a)
            while j >= 0:
                if chunk[j + len(a) : j + len(a) + len(b)] == b:
                    found.add(i)
                j = chunk.find(a, j + 1)
        pos += n if pos + n >= hi else n - 64  # overlap: no marker is split between chunks
print('scanned', scanned >> 20, 'MiB; found', sorted(found) if found else 'nothing')
"""


def marker() -> str:
    """A fresh marker: 40 random hex characters."""
    return "orx" + secrets.token_hex(20)[3:]


def heap_scan_code(markers: list[str]) -> str:
    """A program that prints `found nothing` unless its address space holds one of `markers`."""
    pairs = [(m[: len(m) // 2].encode().hex(), m[len(m) // 2 :].encode().hex()) for m in markers]
    return _SCAN.format(pairs=pairs)


@dataclass
class Probe:
    code: str
    limits: dict[str, Any] = field(default_factory=dict)
    expect: str = "ok"  # the status that proves the protection


def probes(port: int, here: str) -> dict[str, list[Probe]]:
    """Every probe, by name: a list of jobs run in order (the last one's result is shown)."""
    out = {
        name: [Probe(code.replace("{port}", str(port)).replace("{here!r}", repr(here)))]
        for name, code in SIMPLE_PROBES.items()
    }
    code_mark, out_mark = marker(), marker()
    out["jobs forked from a clean template"] = [
        Probe(f"secret = {code_mark!r}\nprint({out_mark!r})"),
        Probe(heap_scan_code([code_mark, out_mark])),
    ]
    out["memory per job"] = [Probe(MEMORY_PROBE, {"memory_mb": 192}, expect="memory")]
    out["CPU per job"] = [Probe(CGROUP_PROBE)]
    out["host name and /proc hidden"] = [Probe(HOST_PROBE)]
    out["no inotify, fadvise, RWF_NOWAIT"] = [Probe(PAGE_CACHE_PROBE)]
    out["tools' packages hidden"] = [Probe(TOOLS_PROBE)]
    for name, code in SOLVER_PROBES.items():
        out[f"solver {name}"] = [Probe(code)]
    return out


#: The same LP for every solver: max 3x + 2y, x + y <= 4, x + 3y <= 6, 0 <= x <= 3, y >= 0;
#: the optimum is 11 (x = 3, y = 1). Each probe prints `objective 11.0`.
_PULP = """
import pulp
m = pulp.LpProblem('probe', pulp.LpMaximize)
x = pulp.LpVariable('x', 0, 3)
y = pulp.LpVariable('y', 0)
m += 3 * x + 2 * y
m += x + y <= 4
m += x + 3 * y <= 6
m.solve(pulp.{solver}(msg=False))
print('objective', round(pulp.value(m.objective), 6))
"""
SOLVER_PROBES = {
    "PuLP + CBC": _PULP.format(solver="PULP_CBC_CMD"),
    "PuLP + HiGHS": _PULP.format(solver="HiGHS"),
    "highspy": """
import highspy
h = highspy.Highs()
h.setOptionValue('output_flag', False)
x = h.addVariable(0, 3)
y = h.addVariable(0, highspy.kHighsInf)
h.addConstr(x + y <= 4)
h.addConstr(x + 3 * y <= 6)
h.maximize(3 * x + 2 * y)
print('objective', round(h.getInfo().objective_function_value, 6))
""",
    "OR-Tools": """
from ortools.linear_solver import pywraplp
s = pywraplp.Solver.CreateSolver('GLOP')
x = s.NumVar(0, 3, 'x')
y = s.NumVar(0, s.infinity(), 'y')
s.Add(x + y <= 4)
s.Add(x + 3 * y <= 6)
s.Maximize(3 * x + 2 * y)
s.Solve()
print('objective', round(s.Objective().Value(), 6))
""",
    "Pyomo + HiGHS (appsi)": """
import pyomo.environ as pyo
m = pyo.ConcreteModel()
m.x = pyo.Var(bounds=(0, 3))
m.y = pyo.Var(bounds=(0, None))
m.c1 = pyo.Constraint(expr=m.x + m.y <= 4)
m.c2 = pyo.Constraint(expr=m.x + 3 * m.y <= 6)
m.o = pyo.Objective(expr=3 * m.x + 2 * m.y, sense=pyo.maximize)
pyo.SolverFactory('appsi_highs').solve(m)
print('objective', round(pyo.value(m.o), 6))
""",
}

TOOLS_PROBE = """
import importlib.util
seen = [m for m in ('or_common', 'litellm', 'torch', 'transformers', 'openai', 'click')
        if importlib.util.find_spec(m) is not None]
print('importable: ' + ', '.join(seen) if seen else 'none of or_common, litellm, torch, transformers, openai, click')
"""


#: Three processes of one job touch 96 MiB each under a 192 MiB limit: together they go over.
MEMORY_PROBE = """
import os, time
kids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        block = bytearray(96 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(2)
        os._exit(0)
    kids.append(pid)
held = sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 for pid in kids)
print(f'{held} of 3 children held 96 MiB' + (': NOT CONTAINED' if held == 3 else ''))
"""

CGROUP_PROBE = """
lines = [l for l in open('/proc/self/cgroup').read().splitlines() if '/slot-' in l]
print('; '.join(l.split(':', 2)[1] + ' ' + l.rsplit('/', 1)[1][:12] + '…' for l in lines) or 'NO job cgroup')
"""

HOST_PROBE = """
import socket
print('host name', socket.gethostname(), '| cmdline', open('/proc/cmdline').read().strip(),
      '| loadavg', open('/proc/loadavg').read().strip(), '| key-users', len(open('/proc/key-users').read()), 'bytes')
"""

PAGE_CACHE_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
out = []
out.append('inotify ' + ('OPENED' if libc.inotify_init1(0) >= 0 else os.strerror(ctypes.get_errno())))
fd = os.open('/dev/zero', os.O_RDONLY)
try:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); out.append('fadvise ALLOWED')
except OSError as e:
    out.append('fadvise ' + e.strerror)
try:
    os.preadv(fd, [bytearray(16)], 0, os.RWF_NOWAIT); out.append('RWF_NOWAIT ALLOWED')
except OSError as e:
    out.append('RWF_NOWAIT ' + e.strerror)
print('; '.join(out))
"""
