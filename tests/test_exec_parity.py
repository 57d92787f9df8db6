"""or-exec parity: a model-style program prints in the sandbox exactly what `python main.py`
prints in a fresh directory.

Each program runs twice: as a sandboxed job, and as a plain `python main.py` in a fresh
temporary directory (named main.py too, so that directory listings agree). Their stdout must be
equal after masking only what legitimately differs between any two runs of the same program:
  - CBC's temporary file names (`<32 hex>-pulp.mps`, `.sol`, ...), fresh uuid4 names each run;
  - the directory a job runs in (`/tmp/...` paths), a fresh temporary directory each run;
  - CBC's timing figures ("time 0.002", "(CPU seconds): 0.00"), which vary run to run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ROOT
from or_exec import solvers
from or_exec.limits import Limits
from or_exec.pool import SyncPool

MODEL = """
import pulp
m = pulp.LpProblem("bakery", pulp.LpMaximize)
x = pulp.LpVariable("bread", 0, cat="Integer")
y = pulp.LpVariable("cake", 0, cat="Integer")
m += 3 * x + 5 * y
m += 2 * x + 4 * y <= 100, "flour"
m += x + 3 * y <= 60, "sugar"
m += x <= 40, "oven"
"""
REPORT = """
print("Status:", pulp.LpStatus[m.status])
print("bread =", x.varValue, "cake =", y.varValue)
print("Objective:", pulp.value(m.objective))
"""

PROGRAMS = {
    # the idiom models write most: the default solver object built at `import pulp`
    "default_solve": MODEL + "m.solve()" + REPORT,
    "lp_solver_default": MODEL + "m.solve(pulp.LpSolverDefault)" + REPORT,
    "set_solver_default": MODEL + "m.setSolver()\nm.solve()" + REPORT,
    "get_solver": MODEL + "m.solve(pulp.getSolver('PULP_CBC_CMD', msg=False))" + REPORT,
    "msg_true": MODEL + "m.solve(pulp.PULP_CBC_CMD(msg=True))" + REPORT,
    "write_lp_in_cwd": MODEL
    + textwrap.dedent("""
        import os
        m.writeLP("bakery.lp")
        m.writeMPS("bakery.mps")
        m.solve(pulp.PULP_CBC_CMD(msg=False))
        print(sorted(os.listdir(".")))
        print(open("bakery.lp").read())
    """)
    + REPORT,
    "keep_files": MODEL
    + textwrap.dedent("""
        import os
        m.solve(pulp.PULP_CBC_CMD(msg=False, keepFiles=True))
        print(sorted(f for f in os.listdir(".") if f.startswith("bakery")))
    """)
    + REPORT,
    "tempfile_and_solver_tmp": textwrap.dedent("""
        import os, tempfile, pulp
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "data.csv"), "w") as fh:
                fh.write("a,3\\nb,5\\n")
            rows = [line.split(",") for line in open(os.path.join(d, "data.csv"))]
        with tempfile.NamedTemporaryFile("w+", suffix=".txt") as fh:
            fh.write("hello")
            fh.seek(0)
            print(fh.read(), os.path.dirname(fh.name) == tempfile.gettempdir())
        print(os.path.isdir(pulp.LpSolverDefault.tmpDir), os.access(pulp.LpSolverDefault.tmpDir, os.W_OK))
        m = pulp.LpProblem("p", pulp.LpMinimize)
        v = {k: pulp.LpVariable(k, 0) for k, _ in rows}
        m += pulp.lpSum(int(c) * v[k] for k, c in rows)
        m += pulp.lpSum(v.values()) >= 4
        m.solve()
        print(pulp.LpStatus[m.status], pulp.value(m.objective))
    """),
    "scipy_milp_linprog": textwrap.dedent("""
        import numpy as np
        from scipy.optimize import linprog, milp, LinearConstraint, Bounds
        res = linprog(c=[-3, -5], A_ub=[[2, 4], [1, 3], [1, 0]], b_ub=[100, 60, 40], method="highs")
        print(res.status, round(-res.fun, 6), np.round(res.x, 6))
        c = -np.array([3.0, 5.0])
        cons = LinearConstraint(np.array([[2, 4], [1, 3], [1, 0]]), -np.inf, [100, 60, 40])
        r = milp(c, constraints=cons, integrality=np.ones(2), bounds=Bounds(0, np.inf))
        print(r.status, round(-r.fun, 6), r.x.round().astype(int).tolist())
    """),
    "sympy": textwrap.dedent("""
        import sympy as sp
        x, y = sp.symbols("x y", real=True)
        print(sp.solve([2*x + 4*y - 100, x + 3*y - 60], [x, y]))
        print(sp.diff(sp.sin(x) * sp.exp(x), x))
        print(sp.Rational(3, 7) + sp.Rational(1, 3))
    """),
    # pickle finds the program's own functions and classes in __main__
    "multiprocessing_and_pickle": textwrap.dedent("""
        import pickle
        from dataclasses import dataclass
        from multiprocessing import Pool

        @dataclass
        class Item:
            name: str
            weight: int

        def value(item):
            return item.weight * 3

        if __name__ == "__main__":
            items = [Item("a", 2), Item("b", 5)]
            print(pickle.loads(pickle.dumps(items)) == items)
            with Pool(2) as pool:
                print(pool.map(value, items))
    """),
    "stderr_and_exit": textwrap.dedent("""
        import sys, pulp
        m = pulp.LpProblem("infeasible", pulp.LpMinimize)
        a = pulp.LpVariable("a", 0, 1)
        m += a
        m += a >= 2
        m.solve()
        print(pulp.LpStatus[m.status])
        print("warning", file=sys.stderr)
        sys.exit(pulp.LpStatus[m.status] != "Optimal")
    """),
}

# the realistic programs of the benchmark, too (slow: bench/exec.py compares them on each run)
sys.path.insert(0, str(ROOT / "bench"))
from programs import PROGRAMS as BENCH  # noqa: E402

CORE = list(PROGRAMS)
PROGRAMS.update({f"bench_{name}": code for name, code in BENCH.items()})
CASES = [*CORE, *(pytest.param(f"bench_{n}", marks=pytest.mark.slow) for n in BENCH)]

TEMP_NAME = re.compile(r"[0-9a-f]{32}-pulp")
TMP_PATH = re.compile(r"/tmp/[^\s'\"]*")
TIMES = re.compile(r"(time|seconds\)?:?)\s+[0-9.]+", re.IGNORECASE)
DURATION = re.compile(r"[0-9.]+(?= seconds)")


def mask(text: str) -> str:
    """Hide what differs between any two runs of one program (see the module docstring)."""
    text = TMP_PATH.sub("/tmp/P", TEMP_NAME.sub("H-pulp", text))
    return DURATION.sub("T", TIMES.sub(r"\1 T", text))


#: what jobs run in: the solver environment's interpreter when it is installed (or-exec solvers)
PLAIN_PYTHON = str(solvers.installed()[0] or sys.executable)


def plain_run(code: str, tmp_path_factory) -> tuple[int, str]:
    """`python main.py` in a fresh directory, with the plain environment a user's shell has."""
    workdir = tmp_path_factory.mktemp("plain")
    (workdir / "main.py").write_text(code)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(workdir)}
    proc = subprocess.run(
        [PLAIN_PYTHON, "main.py"],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=120,
        env=env,
    )
    return proc.returncode, proc.stdout


@pytest.fixture(scope="module")
def plain_outputs(tmp_path_factory):
    """The plain runs of the core programs, two at a time; others are run when needed."""
    with ThreadPoolExecutor(2) as ex:
        runs = ex.map(lambda name: plain_run(PROGRAMS[name], tmp_path_factory), CORE)
        outputs = dict(zip(CORE, runs, strict=True))
    return outputs


@pytest.fixture(scope="module")
def pool():
    p = SyncPool(workers=2, limits=Limits(timeout=60))
    yield p
    p.close()


def test_mask_hides_only_run_to_run_noise():
    line = "command line - cbc /tmp/0123456789abcdef0123456789abcdef-pulp.mps max timeMode elapsed"
    assert mask(line) == "command line - cbc /tmp/P max timeMode elapsed"
    assert mask("Total time (CPU seconds):       0.01   (Wallclock seconds):       0.02") == (
        "Total time (CPU seconds): T   (Wallclock seconds): T"
    )
    assert mask("after 0 iterations and 0 nodes (0.01 seconds)") == (
        "after 0 iterations and 0 nodes (T seconds)"
    )
    assert mask("Objective: 145.0") == "Objective: 145.0"


@pytest.mark.parametrize("name", CASES)
def test_sandbox_prints_what_a_plain_run_prints(name, pool, plain_outputs, tmp_path_factory):
    if name not in plain_outputs:
        plain_outputs[name] = plain_run(PROGRAMS[name], tmp_path_factory)
    code, expected = plain_outputs[name]
    result = pool.run(PROGRAMS[name])
    assert result.exit_code == code, (name, result.stderr)
    assert result.status == ("ok" if code == 0 else "error"), result.stderr
    assert mask(result.stdout) == mask(expected)
    assert expected.strip(), "the plain run printed nothing: the program is broken"
