"""or-grpo's commands on CPU: prepare (read back by verl's own dataset class), the train
config (composed and validated with verl's own trainer config), the `train --dry-run` golden,
the launch with a stand-in entry point, metrics and curves, export through verl's merger, and
the stage-2 recipe. The agent loop and the reward are tested in test_grpo.py."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from conftest import FIXTURES, GOLDEN, ROOT
from helpers import QUESTION, QWEN, make_model, make_tokenizer
from or_common.reasoner import PROMPT_VERSION, REASONER_PROMPT, build_messages
from or_common.tokens import load_tokenizer
from or_grpo import config as cfgmod
from or_grpo.cli import main
from or_grpo.metrics import build_metrics
from or_grpo.reward import compute_score


def test_prepare_writes_what_verls_dataset_reads(tmp_path, tok):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    problems = tmp_path / "rl.jsonl"
    problems.write_text(
        json.dumps({"id": "a", "benchmark": "nl4opt", "question": QUESTION, "answer": 1160})
        + "\n"
        + json.dumps({"id": 7, "benchmark": "mamo", "question": "Q2", "answer": "infeasible"})
        + "\n"
        + json.dumps({"id": "b", "question": "Q3", "answer": None})
        + "\n"
        + "not json\n"
        + json.dumps({"id": "c", "question": "Q4", "answer": "lots"})
        + "\n"
    )
    result = CliRunner().invoke(
        main, ["prepare", str(problems), "-o", str(tmp_path / "d"), "--val", str(problems)]
    )
    assert result.exit_code == 1
    assert f"{problems}:3: no answer" in result.stderr
    assert f"{problems}:4: " in result.stderr and f"{problems}:5: 'answer' is not" in result.stderr
    # verl's own length filter is left to the real run (it spawns a process per call, ~8 s
    # here); `prepare --tokenizer` applies the same limit up front (tested below)
    config = OmegaConf.create(
        {
            "max_prompt_length": 3000,
            "filter_overlong_prompts": False,
            "cache_dir": str(tmp_path / "cache"),
            "prompt_key": "prompt",
        }
    )
    data = RLHFDataset([str(tmp_path / "d" / "train.parquet")], tok, config)
    assert len(data) == 2
    first, second = data[0], data[1]
    assert first["raw_prompt"] == build_messages(QUESTION, REASONER_PROMPT, 4)
    assert first["data_source"] == "nl4opt" and first["agent_name"] == "code_in_thinking"
    assert first["reward_model"]["ground_truth"] == "1160"
    assert second["reward_model"]["ground_truth"] == "infeasible"
    assert second["extra_info"]["id"] == "7" and second["index"] == 1
    assert first["extra_info"]["prompt_version"] == PROMPT_VERSION
    assert json.loads((tmp_path / "d" / "prepare.json").read_text())["splits"]["val"]["rows"] == 2
    val = RLHFDataset([str(tmp_path / "d" / "val.parquet")], tok, config)
    assert val[0]["extra_info"]["split"] == "val"
    short = CliRunner().invoke(
        main,
        [
            "prepare",
            str(problems),
            "-o",
            str(tmp_path / "e"),
            "--tokenizer",
            QWEN,
            "--max-prompt-length",
            "100",
        ],
    )
    assert f"{problems}:1: prompt is " in short.stderr and "over the limit of 100" in short.stderr


def test_our_overrides_compose_with_verls_trainer_config(verl_config):
    from omegaconf import OmegaConf

    c = verl_config
    assert c.algorithm.adv_estimator == "grpo" and c.algorithm.use_kl_in_reward is False
    actor, rollout = c.actor_rollout_ref.actor, c.actor_rollout_ref.rollout
    assert actor.optim.lr == 1e-6 and actor.ppo_mini_batch_size == 64
    assert actor.use_kl_loss is False and actor.entropy_coeff == 0
    assert (rollout.n, rollout.temperature, rollout.top_p) == (8, 0.6, 0.95)
    assert rollout.prompt_length == 3000 and rollout.response_length == 400
    assert c.data.train_batch_size == 64 and c.trainer.total_epochs == 100
    assert c.trainer.use_v1 is False
    assert c.trainer.save_freq == 7 and rollout.agent.num_workers == 2  # passed through, win
    assert c.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"
    assert rollout.agent.default_agent_loop == "code_in_thinking"
    assert c.reward.custom_reward_function.path == "pkg://or_grpo.reward"
    assert c.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH.endswith(
        "runs/storm/verl-metrics.jsonl"
    )
    OmegaConf.resolve(c)  # every interpolation resolves
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    assert not need_critic(c) and not need_reference_policy(c)  # GRPO, no KL: actor only
    validate_config(config=c, use_reference_policy=False, use_critic=False)  # main_ppo's checks
    assert omega_conf_to_dataclass(c.actor_rollout_ref.rollout).response_length == 400
    from verl.utils.import_utils import load_extern_object

    fn = load_extern_object(
        c.reward.custom_reward_function.path, c.reward.custom_reward_function.name
    )
    assert fn is compute_score


def test_train_dry_run_golden(tmp_path, monkeypatch):
    """Regenerate: OR_GRPO_REGEN=1 uv run pytest tests/test_grpo_train.py -k dry_run"""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "train",
            "data/rl",
            "--model",
            "ckpt/sft",
            "-o",
            "runs/storm",
            "--dry-run",
            "trainer.save_freq=5",
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.stdout.replace(str(tmp_path.resolve()), "<cwd>").replace(sys.executable, "python")
    golden = GOLDEN / "grpo_train_dry_run.txt"
    if os.environ.get("OR_GRPO_REGEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_metrics_and_plot_from_a_run_folder(tmp_path):
    run = tmp_path / "storm"
    (run / "rollouts").mkdir(parents=True)
    rows = [
        {
            "step": 1,
            "split": "train",
            "correct": c,
            "code_blocks": b,
            "executions": b,
            "exec_statuses": {"ok": b},
            "response_tokens": 100 * b,
            "finish": "stop",
        }
        for c, b in ((1.0, 1), (0.0, 3))
    ]
    rows.append(
        {
            "step": 1,
            "split": "val",
            "data_source": "nl4opt",
            "correct": 1.0,
            "code_blocks": 1,
            "executions": 1,
            "exec_statuses": {},
            "response_tokens": 9,
        }
    )
    (run / "rollouts" / "h-1.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + "{cut"
    )
    (run / "verl-metrics.jsonl").write_text(
        json.dumps({"step": 1, "data": {"critic/score/mean": 0.5, "other": 1}}) + "\n"
    )
    # a relaunch (verl resumed from a checkpoint) replays step 2: its latest launch counts
    replay = [
        {"step": 2, "split": "train", "correct": c, "launch": launch, "code_blocks": 1}
        for launch, c in (("20260101T000000", 0.0), ("20260102T000000", 1.0))
    ]
    (run / "rollouts" / "h-2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in replay))
    (run / "verl-metrics-20260102T000000.jsonl").write_text(
        json.dumps({"step": 2, "data": {"critic/score/mean": 1.0}}) + "\n"
    )
    record, second = build_metrics(run)
    assert second["accuracy"] == 1.0 and second["trajectories"] == 1
    assert second["verl"] == {"critic/score/mean": 1.0}
    assert record["accuracy"] == 0.5 == record["reward"] and record["code_blocks"] == 2.0
    assert record["response_tokens"] == 200.0 and record["val_accuracy"] == 1.0
    assert record["val"] == {"nl4opt": 1.0} and record["verl"] == {"critic/score/mean": 0.5}
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0]) == record
    png = tmp_path / "c.png"
    args = ["plot", str(run), str(run), "--label", "a", "--label", "b", "-o", str(png)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_export_dry_run_picks_the_latest_checkpoint(tmp_path):
    for step in (10, 20):
        (tmp_path / "checkpoints" / f"global_step_{step}" / "actor").mkdir(parents=True)
    result = CliRunner().invoke(main, ["export", str(tmp_path), "-o", "hf", "--dry-run"])
    assert result.exit_code == 0
    assert "verl.model_merger merge --backend fsdp" in result.stdout
    assert "global_step_20/actor" in result.stdout
    empty = CliRunner().invoke(main, ["export", str(tmp_path / "checkpoints"), "-o", "hf"])
    assert empty.exit_code == 2


def test_train_refuses_what_cannot_run_and_converts_jsonl_validation(tmp_path):
    from or_grpo.cli import _convert_val

    runner = CliRunner()
    missing = runner.invoke(
        main, ["train", str(tmp_path), "--model", "m", "-o", str(tmp_path / "o")]
    )
    assert missing.exit_code == 2 and "no train.parquet" in missing.stderr
    (tmp_path / "train.parquet").write_bytes(b"")
    problems = FIXTURES / "problems.jsonl"
    args = [
        "train",
        str(tmp_path),
        "--model",
        "m",
        "-o",
        str(tmp_path / "o"),
        "--val",
        str(problems),
    ]
    if not all(importlib.util.find_spec(m) for m in ("vllm", "ray", "verl")):
        no_gpu = runner.invoke(main, args)
        assert no_gpu.exit_code == 2 and "uv sync --extra gpu" in no_gpu.stderr
        assert "Traceback" not in no_gpu.output
    dry = runner.invoke(main, [*args, "--dry-run"])
    assert f"data.val_files=[{tmp_path}/o/val-problems.parquet]" in dry.stdout
    assert "trainer.test_freq=10" in dry.stdout and "trainer.val_before_train=True" in dry.stdout
    cfg = cfgmod.TrainConfig(
        data=str(tmp_path), model="m", out=str(tmp_path / "o"), val=[str(problems)]
    )
    (tmp_path / "o").mkdir()
    _convert_val(cfg, {})
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "o" / "val-problems.parquet").to_pylist()
    assert len(table) == 6 and table[0]["extra_info"]["split"] == "val"
    assert table[0]["prompt"] == build_messages(
        json.loads(problems.read_text().splitlines()[0])["question"], REASONER_PROMPT, 4
    )


FAKE_VERL = """
import json, os, sys
args = dict(a.split("=", 1) for a in sys.argv[1:])
out = os.path.dirname(args["trainer.default_local_dir"])
print("verl says hello on stdout")
with open(args["+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH"], "w") as f:
    f.write(json.dumps({"step": 1, "data": {"critic/score/mean": 1.0}}) + "\\n")
os.makedirs(os.path.join(out, "rollouts"))
with open(os.path.join(out, "rollouts", "h-1.jsonl"), "w") as f:
    f.write(json.dumps({"step": 1, "split": "train", "correct": 1.0, "code_blocks": 2,
                        "executions": 1, "exec_statuses": {"ok": 1}, "response_tokens": 50}) + "\\n")
sys.exit(int(args.get("fake.exit", 0)))
"""


def test_train_launches_the_command_and_collects_metrics(tmp_path, monkeypatch, capfd):
    """`train` as it runs on a GPU node, with verl's entry point replaced by a stand-in script
    that writes what verl and the agent loop write."""
    import or_grpo.cli as cli

    (tmp_path / "fake_verl.py").write_text(FAKE_VERL)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(cfgmod, "VERL_ENTRY", "fake_verl")
    monkeypatch.setattr(cli, "_need_gpu_stack", lambda: None)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.parquet").write_bytes(b"")
    out = tmp_path / "run"
    args = ["train", str(tmp_path / "data"), "--model", "m", "-o", str(out)]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "verl says hello" in capfd.readouterr().err  # verl's stdout went to stderr
    run = json.loads((out / "run.json").read_text())
    assert run["command"][2] == "fake_verl" and run["scoring"].startswith("strict")
    assert {"date", "git_commit", "tool_version", "prompt_version"} <= set(run)  # or_common.stamp
    assert "scoring_version" not in run  # `scoring` says it, with the protocol
    assert f"launch: '{run['settings']['launch']}'" in (out / "agent_loop.yaml").read_text()
    assert (out / f"verl-metrics-{run['settings']['launch']}.jsonl").exists()
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert record["accuracy"] == 1.0 and record["code_blocks"] == 2.0
    assert (out / "curves.png").exists()
    failed = CliRunner().invoke(cli.main, [*args, "fake.exit=3"])
    assert failed.exit_code == 1


def test_export_merges_an_fsdp_actor_into_a_loadable_hf_folder(tmp_path):
    """A one-rank checkpoint in verl's FSDP actor layout (the shard file, fsdp_config.json and
    the huggingface/ folder verl writes next to it), merged by verl's own merger."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    actor = tmp_path / "run" / "checkpoints" / "global_step_2" / "actor"
    hf = actor / "huggingface"
    tokenizer = make_tokenizer(hf)
    make_model(hf, len(tokenizer))
    (hf / "model.safetensors").unlink()  # verl keeps only config and tokenizer there
    original = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(hf))
    torch.save(original.state_dict(), actor / "model_world_size_1_rank_0.pt")
    (actor / "fsdp_config.json").write_text(json.dumps({"world_size": 1}))
    (tmp_path / "run" / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("2")
    result = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "-o", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the merger's prints went to stderr
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    for name, tensor in original.state_dict().items():
        assert torch.allclose(merged.state_dict()[name].float(), tensor.bfloat16().float()), name
    assert load_tokenizer(str(tmp_path / "hf")).chat_template  # what or-gen renders prompts with
    assert json.loads((tmp_path / "hf" / "or-grpo.json").read_text())["from"] == str(actor)


def test_storm_recipe_dry_run(tmp_path):
    """recipes/verl/grpo.sh prepares the data and, with DRY_RUN=1, prints the verl command."""

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "MODEL": "ckpt/sft",
        "RL": str(FIXTURES / "problems.jsonl"),
        "VAL": str(FIXTURES / "problems.jsonl"),
        "OUT": str(tmp_path),
        "DRY_RUN": "1",
    }
    result = subprocess.run(
        ["bash", str(ROOT / "recipes" / "verl" / "grpo.sh"), "trainer.save_freq=5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"data.val_files=[{tmp_path}/01-data/val.parquet]" in result.stdout
    command = result.stdout.split("\n\n#")[0]
    assert command.count("trainer.save_freq=") == 1 and "trainer.save_freq=5" in command
    assert (tmp_path / "01-data" / "train.parquet").exists() and not (tmp_path / "02-grpo").exists()
