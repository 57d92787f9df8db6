"""The jobs' own solver environment: a virtualenv apart from the tools' one.

Jobs run in the interpreter of this environment, so a job never sees litellm, torch, the
tools' code or anything else it does not need, and finds the solvers OR people use: PuLP (CBC,
and HiGHS through highspy), highspy, OR-Tools, Pyomo (HiGHS through appsi), numpy, scipy,
sympy, networkx, at the versions locked in `solvers.txt` (regenerate it from `solvers.in`
with `uv pip compile solvers.in --universal --python-version 3.11 --no-header --no-annotate
-o solvers.txt`). A user adds packages with `or-exec solvers install --add gurobipy` (a licence
file is passed with OR_EXEC_BIND and OR_EXEC_PASS_ENV, see `licence_binds`).

Where: OR_EXEC_SOLVERS, else `~/.cache/or-exec/solvers`. Without it, jobs run in the tools'
interpreter, and `or-exec doctor` and a warning say so (`or-exec solvers install` makes it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "solvers.txt"
STAMP = ".or-exec-solvers"


def location() -> Path:
    given = os.environ.get("OR_EXEC_SOLVERS")
    if given:
        return Path(given)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "or-exec" / "solvers"


def _digest(extra: list[str]) -> str:
    text = REQUIREMENTS.read_text() + "\n".join(sorted(extra))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _python(env: Path) -> Path:
    return env / "bin" / "python"


def installed() -> tuple[Path | None, str]:
    """(the environment's interpreter, or None; what doctor says about it)."""
    env = location()
    python = _python(env)
    stamp = env / STAMP
    if not python.exists() or not stamp.exists():
        return None, f"off: not installed at {env} (run `or-exec solvers install`)"
    recorded = stamp.read_text().split()
    if not recorded or recorded[0] != _digest(recorded[1:]):
        return None, f"off: {env} was made from other requirements (run `or-exec solvers install`)"
    extra = f", and {' '.join(recorded[1:])}" if recorded[1:] else ""
    return python, f"on ({env}: the locked solvers{extra}; the tools' packages are not there)"


def install(extra: list[str], quiet: bool = False) -> Path:
    """Make (or update) the environment: the locked requirements plus `extra` packages."""
    env = location()
    uv = shutil.which("uv")
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not base.exists():
        base = Path(sys.executable).resolve()
    q = ["-q"] if quiet else []
    if uv:
        subprocess.run(
            [uv, "venv", *q, "--allow-existing", "--python", str(base), str(env)], check=True
        )
        cmd = [uv, "pip", "install", *q, "--python", str(_python(env)), "-r", str(REQUIREMENTS)]
    else:
        subprocess.run([str(base), "-m", "venv", str(env)], check=True)
        cmd = [str(_python(env)), "-m", "pip", "install", *q, "-r", str(REQUIREMENTS)]
    subprocess.run([*cmd, *extra], check=True)
    (env / STAMP).write_text(" ".join([_digest(extra), *sorted(extra)]) + "\n")
    return env


def package_dir() -> str:
    """A directory holding only this package (a link to it): the solver interpreter's
    PYTHONPATH, so that the sandbox parent imports or_exec and nothing else of the tools'. One
    per checkout (the link's target is part of its name): two checkouts on one machine never
    run each other's sandbox code."""
    link_dir = Path(tempfile.gettempdir()) / f"or-exec-pkg-{os.getuid()}-{_digest([str(HERE)])}"
    link = link_dir / "or_exec"
    if not link.exists():
        link_dir.mkdir(mode=0o755, exist_ok=True)
        tmp = link_dir / f".or_exec.{os.getpid()}"
        try:
            tmp.symlink_to(HERE)
            tmp.rename(link)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return str(link_dir)


def licence_binds() -> tuple[list[str], dict[str, str]]:
    """What a licensed solver needs from the host: OR_EXEC_BIND (paths, `:`-separated, bound
    read-only into every job's root at the same place, e.g. a gurobi.lic) and OR_EXEC_PASS_ENV
    (names of variables passed to jobs, e.g. GRB_LICENSE_FILE)."""
    binds = [p for p in os.environ.get("OR_EXEC_BIND", "").split(":") if p]
    names = [n for n in os.environ.get("OR_EXEC_PASS_ENV", "").replace(",", " ").split() if n]
    return binds, {n: os.environ[n] for n in names if n in os.environ}
