"""Each trainer default is written once, in its typed config: the flags a command parses without
being given are the dataclass fields' defaults (or-sft's Settings, or-grpo's TrainConfig)."""

from __future__ import annotations

from dataclasses import MISSING, fields

import click
import pytest
from click.testing import CliRunner
from or_grpo import cli as grpo_cli
from or_grpo.config import TrainConfig
from or_sft import cli as sft_cli
from or_sft.settings import Settings


def parsed(command: click.Command, args: list[str]) -> dict:
    """The values `command` would be called with for `args` (defaults filled in), run nothing."""
    with command.make_context(command.name, list(args)) as ctx:
        return dict(ctx.params)


def field_defaults(cls) -> dict:
    return {
        f.name: f.default_factory() if f.default_factory is not MISSING else f.default
        for f in fields(cls)
        if f.default is not MISSING or f.default_factory is not MISSING
    }


SFT_REQUIRED = ["x.jsonl", "--model", "m", "-o", "out"]
GRPO_REQUIRED = ["data", "--model", "m", "-o", "out"]


@pytest.mark.parametrize(
    ("command", "args", "config", "differ"),
    [
        # --num-processes auto becomes the number of visible GPUs (Settings holds the count)
        (sft_cli.train, SFT_REQUIRED, Settings, {"model", "output_dir", "num_processes"}),
        (grpo_cli.train, GRPO_REQUIRED, TrainConfig, {"model", "data", "out"}),
        (grpo_cli.prepare, ["-o", "out"], TrainConfig, {"out"}),
    ],
    ids=["or-sft train", "or-grpo train", "or-grpo prepare"],
)
def test_flag_defaults_are_the_config_defaults(command, args, config, differ):
    values = parsed(command, args)
    defaults = field_defaults(config)
    shared = sorted(set(values) & set(defaults) - differ)
    assert shared, "no flag shares a name with the config"
    for name in shared:
        got = values[name]
        want = defaults[name]
        got = list(got) if isinstance(got, tuple) and isinstance(want, list) else got
        assert (name, got) == (name, want)
        assert type(got) is type(want), name


def test_every_config_default_has_its_flag():
    """The defaults a user cannot set from the command line are the deliberate few."""
    sft = set(parsed(sft_cli.train, SFT_REQUIRED))
    assert set(field_defaults(Settings)) - sft == {"logging_steps"}
    grpo = set(parsed(grpo_cli.train, GRPO_REQUIRED))
    assert set(field_defaults(TrainConfig)) - grpo == {
        "gpu_memory_utilization",
        "project",
        "experiment",
        "launch",
    }


def test_help_shows_the_config_defaults():
    """show_default renders the dataclass value, as the literal did before."""
    runner = CliRunner()
    sft = runner.invoke(sft_cli.main, ["train", "--help"]).stdout
    assert "--lr FLOAT" in sft and "[default: 1e-05]" in sft
    assert "[default: 22000;" in sft  # --max-length, an IntRange
    grpo = runner.invoke(grpo_cli.main, ["train", "--help"]).stdout
    assert "[default: 1e-06]" in grpo and "[default: 16384]" in grpo


def test_the_reasoners_execution_limits_restate_the_sandboxes_own():
    """or_exec.limits imports nothing outside or_exec (the sandbox parent loads it from a root
    without or_common), so the Reasoner's --exec-timeout/--exec-memory defaults restate its
    `Limits` defaults: they must agree."""
    from or_common.reasoner import REASONER_DEFAULTS
    from or_exec.limits import Limits

    assert (REASONER_DEFAULTS.exec_timeout, REASONER_DEFAULTS.exec_memory) == (
        Limits().timeout,
        Limits().memory_mb,
    )


def test_or_intervenes_flags_take_the_intervener_defaults():
    from or_intervene import cli as intervene_cli
    from or_intervene.defaults import INTERVENER_DEFAULTS

    options = {p.name: p.default for p in intervene_cli.main.params}
    assert options["intervener_temperature"] == INTERVENER_DEFAULTS.temperature
    assert options["intervener_top_p"] == INTERVENER_DEFAULTS.top_p
    assert options["reask"] == INTERVENER_DEFAULTS.reask
    assert options["max_interventions"] == INTERVENER_DEFAULTS.max_interventions
