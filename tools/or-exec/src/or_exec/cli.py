"""or-exec: run model-written Python in the sandbox."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

import click
from or_common.cli import DefaultGroup, ToolRun, amap_records, echo_err, epilog, io_options

from .limits import Limits

limit_options = [
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=Limits.timeout,
        show_default=True,
        help="Wall-clock seconds per execution.",
    ),
    click.option(
        "--memory",
        "memory_mb",
        type=click.IntRange(min=64),
        default=Limits.memory_mb,
        show_default=True,
        help="Memory cap per execution, MiB.",
    ),
    click.option(
        "--max-output",
        type=click.IntRange(min=256),
        default=Limits.max_output,
        show_default=True,
        help="Bytes of stdout/stderr kept (head and tail).",
    ),
    click.option(
        "--workers",
        type=click.IntRange(1, 128),
        help=(
            "Executions at once (default: 2 x cores, at least 4, so that a job stuck until its"
            " timeout holds one slot, not half the pool; size a server shared by many RL"
            " workers to their total concurrency, memory allowing: each job may use --memory)."
        ),
    ),
]


def with_limits(func):
    for option in reversed(limit_options):
        func = option(func)
    return func


@click.group(
    cls=DefaultGroup,
    default="run",
    epilog=epilog(
        "or-exec run.jsonl --timeout 10 > rerun.jsonl",
        "or-exec doctor",
        "or-exec serve --port 8711 & or-gen --sandbox http://127.0.0.1:8711 ... < test.jsonl",
    ),
)
def main() -> None:
    """Run model-written Python fast and isolated (default command: run).

    Each execution is a fresh child forked from a warm parent that already imported pulp (and
    numpy, scipy, sympy for code that needs them), in its own empty directory and its own /tmp,
    as an unprivileged per-slot user, in a minimal read-only root (the interpreter and its
    packages only: no host files), in its own pid, network and IPC namespaces (no network,
    nothing shared with other jobs), under a seccomp filter, with none of the caller's
    environment variables, and limits on time, memory, CPU, files, processes and output.
    Statuses come from what the parent measured, never from the job. `or-exec doctor` says
    which of these protections are active on this machine.
    """


@main.command(
    "run",
    epilog=epilog(
        "or-exec run.jsonl --stateful -o rerun.jsonl",
        "or-gen --model tiny ... | or-exec --timeout 5 | or-score",
    ),
)
@with_limits
@click.option(
    "--stateful",
    is_flag=True,
    help="Replay the trajectory's earlier successful blocks first (notebook style).",
)
@click.option(
    "--sandbox",
    "sandbox_url",
    metavar="URL",
    help="Use an `or-exec serve` pool at URL instead of a local one.",
)
@click.option(
    "--sandbox-wait",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long to wait for an unreachable --sandbox server (default 120, or "
    "OR_EXEC_SANDBOX_WAIT); the wait is announced on stderr.",
)
@click.option(
    "--file",
    "file_specs",
    multiple=True,
    metavar="NAME=PATH",
    help="With FILE.py inputs: a data file put in the program's working directory as NAME.",
)
@io_options
def run_cmd(
    io,
    timeout: float,
    memory_mb: int,
    max_output: int,
    workers: int | None,
    stateful: bool,
    sandbox_url: str | None,
    sandbox_wait: float | None,
    file_specs: tuple[str, ...],
) -> None:
    """Execute the last ```python block of each trajectory, or plain Python programs.

    If the flow stops right after that block (a trajectory paused at the closing fence), an
    `executor` segment with the fenced ```output is appended to the flow. If the block was already
    answered, the flow is left as it is and the rerun's output goes to `exec.text`, with
    `exec.matches_flow` saying whether it agrees with the recorded output. Full details (status,
    exit code, stdout, stderr, seconds, per-phase timings) go under `exec`. Records without a
    code block pass through unchanged. A summary by status goes to stderr at the end.

    Inputs named *.py are programs: `or-exec run prog.py --file data.csv=./data.csv` runs it as
    `python prog.py` would (its output passes through, its exit status is ours); several
    programs give one JSON record each.
    """
    from .pool import Pool
    from .programs import looks_like_programs, not_jsonl_hint, summary
    from .records import execute_or_error
    from .server import RemotePool, SandboxUnavailable

    limits = Limits(timeout=timeout, memory_mb=memory_mb, max_output=max_output)

    def make_pool():
        if sandbox_url:
            return RemotePool(sandbox_url, limits, retry_seconds=sandbox_wait)
        return Pool(workers=workers, limits=limits)

    if looks_like_programs(io.inputs):
        sys.exit(_run_programs(io.inputs, make_pool(), limits, file_specs))
    if file_specs:
        raise click.UsageError("--file goes with FILE.py inputs (programs), not records")
    for path in io.inputs:
        hint = not_jsonl_hint(path) if path != "-" and not path.endswith(".gz") else None
        if hint is not None:
            raise click.UsageError(hint)
    pool = make_pool()
    counts: Counter[str] = Counter()

    async def start() -> None:
        try:
            protections = await pool.start(["pulp"])  # the other tiers start on their first job
        except SandboxUnavailable as exc:  # nothing can run: one line, before the first record
            raise click.ClickException(str(exc)) from None
        _warn_missing(protections)

    async def execute(record: dict) -> dict:
        out = await execute_or_error(record, pool, limits, stateful)
        status = out.get("exec", {}).get("status")
        if status:
            counts[status] += 1
        return out

    with ToolRun("or-exec", io) as run:
        window = 4 * (getattr(pool, "workers", None) or 16)
        amap_records(run, execute, concurrency=window, ordered=True, start=start, close=pool.close)
    if counts and not io.quiet:
        echo_err(f"or-exec: {summary(counts)}")
    sys.exit(run.exit_code)


def _run_programs(paths, pool, limits: Limits, file_specs) -> int:
    from .programs import parse_files, report, run_programs
    from .server import SandboxUnavailable

    try:
        files = parse_files(file_specs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def go():
        try:
            await pool.start(["pulp"])
            return await run_programs(paths, pool, limits, files)
        finally:
            await pool.close()

    try:
        pairs, counts = asyncio.run(go())
    except SandboxUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{exc.filename}: {exc.strerror}") from None
    return report(pairs, counts)


def _warn_missing(protections: dict[str, str]) -> None:
    for name, state in protections.items():
        if not state.startswith("on"):
            echo_err(f"or-exec: warning: {name} is {state}")


def probe_line(name: str, status: str, output: str, width: int = 160) -> str:
    """One doctor line: the probe's status and its output on one line, shortened at a word."""
    import textwrap

    shown = " ".join(output.split())
    return "  " + textwrap.shorten(f"{name}: {status}: {shown}", width=width, placeholder=" …")


@main.command("doctor", epilog=epilog("or-exec doctor"))
def doctor_cmd() -> None:
    """Say which protections are active here, and prove them with probe jobs."""
    import os
    import socket

    from .pool import Pool
    from .sandbox.probes import probes

    async def go() -> None:
        pool = Pool(workers=1)
        try:
            protections = await pool.start(["pulp"])
            click.echo("Protections:")
            for name, state in protections.items():
                click.echo(f"  {'✓' if state.startswith('on') else '✗'} {name}: {state}")
            click.echo("Probes (each runs as a sandboxed job):")
            with socket.create_server(("127.0.0.1", 0)) as listener:
                port = listener.getsockname()[1]
                for name, jobs in probes(port, os.path.abspath(__file__)).items():
                    for probe in jobs:
                        limits = Limits(**{**pool.limits.to_dict(), **probe.limits})
                        result = await pool.run(probe.code, limits)
                    output = result.stdout if result.status == "ok" else result.stderr
                    if name.startswith(("default solver", "solver ")) and result.status == "ok":
                        output = output.strip().splitlines()[-1]  # CBC's banner comes first
                    if result.status != "ok" and result.message:
                        output = result.message
                    status = result.status
                    if probe.expect != "ok":
                        held = result.status == probe.expect
                        status = f"{result.status} ({'contained' if held else 'NOT CONTAINED'})"
                    click.echo(probe_line(name, status, output or result.stdout))
        finally:
            await pool.close()

    asyncio.run(go())


@main.command(
    "serve",
    epilog=epilog(
        "or-exec serve --host 127.0.0.1 --port 8711 --workers 16",
        "OR_EXEC_TOKEN=$(openssl rand -hex 16) or-exec serve --host 0.0.0.0 --workers 64",
        "curl -s http://127.0.0.1:8711/openapi.json | jq '.paths | keys'",
    ),
)
@with_limits
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8711, show_default=True)
@click.option(
    "--token",
    envvar="OR_EXEC_TOKEN",
    metavar="TOKEN",
    help="Require `Authorization: Bearer TOKEN` on /run, /run_code and /stats "
    "(default: OR_EXEC_TOKEN; clients send the same variable).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback --host without a token (anyone who reaches the port runs code).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=0),
    help="Requests that may wait for a worker before new ones get 503 + Retry-After "
    "(default: 4 x workers).",
)
@click.option("-v", "--verbose", is_flag=True, help="An access log on stderr.")
def serve_cmd(
    timeout: float,
    memory_mb: int,
    max_output: int,
    workers: int | None,
    host: str,
    port: int,
    token: str | None,
    insecure: bool,
    max_queue: int | None,
    verbose: bool,
) -> None:
    """Serve one pool over HTTP/JSON so many generators or RL workers share it.

    Two dialects: POST /run (or-exec's own) and POST /run_code (SandboxFusion's, which verl's
    sandbox_fusion reward and tool call). GET /openapi.json describes both; GET /health shows
    the ceilings (the limits given here: clients may ask for less, never more) and the
    protections."""
    from .pool import Pool
    from .server import serve

    if not token and not insecure and not _loopback(host):
        raise click.UsageError(
            f"--host {host} is reachable from other machines: give a --token (or OR_EXEC_TOKEN),"
            " or --insecure to serve without one"
        )
    pool = Pool(
        workers=workers, limits=Limits(timeout=timeout, memory_mb=memory_mb, max_output=max_output)
    )
    try:
        asyncio.run(serve(pool, host, port, token=token, max_queue=max_queue, verbose=verbose))
    except KeyboardInterrupt:
        echo_err("or-exec: stopped")
    except OSError as exc:  # the address is in use or cannot be bound
        raise click.ClickException(
            f"cannot serve on {host}:{port}: {exc.strerror or exc}"
        ) from None


@main.group("solvers", invoke_without_command=True, epilog=epilog("or-exec solvers install"))
@click.pass_context
def solvers_cmd(ctx: click.Context) -> None:
    """The jobs' own solver environment (PuLP/CBC, HiGHS, OR-Tools, Pyomo, numpy, scipy,
    sympy, networkx, locked): where it is and whether it is in use."""
    if ctx.invoked_subcommand is None:
        from . import solvers

        python, note = solvers.installed()
        click.echo(f"solver environment: {note}")


@solvers_cmd.command(
    "install",
    epilog=epilog("or-exec solvers install", "or-exec solvers install --add gurobipy==12.0.3"),
)
@click.option("--add", "extra", multiple=True, metavar="PACKAGE", help="Another package for jobs.")
@click.option("-q", "--quiet", is_flag=True)
def solvers_install_cmd(extra: tuple[str, ...], quiet: bool) -> None:
    """Make (or update) the solver environment jobs run in (OR_EXEC_SOLVERS, else
    ~/.cache/or-exec/solvers). A licensed solver also needs its licence: OR_EXEC_BIND=/path/to/
    gurobi.lic (bound read-only into every job) and OR_EXEC_PASS_ENV=GRB_LICENSE_FILE."""
    import subprocess

    from . import solvers

    try:
        env = solvers.install(list(extra), quiet)
    except (subprocess.CalledProcessError, OSError) as exc:
        raise click.ClickException(f"could not make the solver environment: {exc}") from None
    echo_err(f"or-exec: solver environment ready at {env}")


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
