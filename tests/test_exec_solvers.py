"""The jobs' own solver environment (issue 21): every solver OR people use runs in the sandbox
exactly as it runs under `python prog.py` in that environment, jobs cannot import the tools'
packages, tier choice knows the new packages, and a licensed solver's file and variable reach
the job. `just test-deps` makes the environment (`or-exec solvers install`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import needs_root
from or_exec import Limits, SyncPool
from or_exec import solvers as solver_env
from or_exec.pool import DEFAULT_TIERS, choose_tier
from or_exec.sandbox.probes import SOLVER_PROBES, TOOLS_PROBE

PYTHON, NOTE = solver_env.installed()
needs_env = pytest.mark.skipif(PYTHON is None, reason=f"solver environment {NOTE}")


@pytest.fixture(scope="module")
def pool():
    p = SyncPool(workers=2, limits=Limits(timeout=30, memory_mb=2048))
    yield p
    p.close()


@needs_env
def test_jobs_run_in_the_solver_environment(pool):
    assert pool.protections["solver environment"].startswith("on (")
    result = pool.run("import sys\nprint(sys.prefix)")
    assert result.stdout.strip() == str(solver_env.location())


@needs_env
@pytest.mark.parametrize("name", list(SOLVER_PROBES))
def test_each_solver_gives_the_same_answer_as_python_in_its_environment(pool, name, tmp_path):
    code = SOLVER_PROBES[name]
    (tmp_path / "prog.py").write_text(code)
    direct = subprocess.run(
        [str(PYTHON), "prog.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    boxed = pool.run(code)
    assert (boxed.status, boxed.exit_code) == ("ok", direct.returncode) == ("ok", 0), boxed.stderr
    assert boxed.stdout == direct.stdout
    assert boxed.stdout.strip().endswith("objective 11.0")


@needs_env
def test_jobs_cannot_import_the_tools_packages(pool):
    assert pool.run(TOOLS_PROBE).stdout.startswith("none of ")
    for module in ("or_common", "litellm", "click"):
        result = pool.run(f"import {module}")
        assert result.status == "error" and "ModuleNotFoundError" in result.stderr


def test_tier_choice_knows_the_new_packages():
    assert choose_tier("import highspy", DEFAULT_TIERS) == "highs"
    assert choose_tier("import pulp\nh = pulp.HiGHS()", DEFAULT_TIERS) == "pulp"
    assert choose_tier("from ortools.sat.python import cp_model", DEFAULT_TIERS) == "ortools"
    assert choose_tier("import pyomo.environ as pyo", DEFAULT_TIERS) == "pyomo"
    assert choose_tier("import networkx as nx\nimport pulp", DEFAULT_TIERS) == "full"
    # no tier has both: the one with most of them
    assert (
        choose_tier("import pyomo.environ\nimport highspy\nimport scipy", DEFAULT_TIERS) == "pyomo"
    )


@needs_env
def test_each_tier_preloads_what_it_names(pool):
    for tier, modules in DEFAULT_TIERS.items():
        code = "import sys\nprint(sorted(m for m in {mods!r} if m in sys.modules))"
        first = f"import {modules[-1]}\n" if modules else ""
        result = pool.run(first + code.format(mods=list(modules)))
        assert result.tier == tier and result.stdout.strip() == str(sorted(modules)), tier


def test_without_the_environment_jobs_still_run_and_it_is_said(monkeypatch, tmp_path):
    monkeypatch.setenv("OR_EXEC_SOLVERS", str(tmp_path / "none"))
    with SyncPool(workers=1, tiers={"pulp": ("pulp",)}) as p:
        assert p.protections["solver environment"].startswith("off: not installed at ")
        assert p.run("import pulp\nprint('ok')").stdout == "ok\n"


@needs_root
def test_a_licence_file_and_variable_reach_the_job(monkeypatch, tmp_path):
    licence = tmp_path / "gurobi.lic"
    licence.write_text("LICENSEID=123\n")
    monkeypatch.setenv("OR_EXEC_BIND", str(licence))
    monkeypatch.setenv("OR_EXEC_PASS_ENV", "GRB_LICENSE_FILE")
    monkeypatch.setenv("GRB_LICENSE_FILE", str(licence))
    code = (
        "import os\npath = os.environ['GRB_LICENSE_FILE']\nprint(open(path).read().strip())\n"
        "try:\n    open(path, 'w')\nexcept OSError as e:\n    print(e.errno)"
    )
    with SyncPool(workers=1, tiers={"pulp": ("pulp",)}) as p:
        assert p.protections["host files for jobs"] == f"on (read-only: {licence})"
        assert p.run(code).stdout.splitlines() == ["LICENSEID=123", "30"]  # EROFS
    assert os.environ.get("OR_EXEC_BIND") == str(licence)


def test_each_checkout_links_its_own_sandbox_package(monkeypatch, tmp_path):
    """The solver interpreter imports or_exec through a link in /tmp: a second checkout (another
    version) on the same machine gets its own link, never the first one's code."""
    other = tmp_path / "other-checkout" / "or_exec"
    other.mkdir(parents=True)
    ours = Path(solver_env.package_dir()) / "or_exec"
    monkeypatch.setattr(solver_env, "HERE", other)
    theirs = Path(solver_env.package_dir()) / "or_exec"
    assert ours.resolve() == Path(solver_env.__file__).resolve().parent
    assert theirs.resolve() == other.resolve()
    shutil.rmtree(theirs.parent)
