#!/usr/bin/env bash
# GPU smoke tests: run every bench/gpu/*.sh (each stage owns its part: gen.sh, sft.sh, grpo.sh)
# on a GPU node, report which passed, and fail if any failed. Knobs are each part's own
# (see the top of each script). The parts take different arguments (or-sft flags, verl
# overrides), so each gets its own: GEN_ARGS, SFT_ARGS, GRPO_ARGS (word-split); arguments on the
# command line are for a single part chosen with PARTS.
#
#   bash bench/gpu-smoke.sh                                   # all parts
#   PARTS="gen" bash bench/gpu-smoke.sh                       # only bench/gpu/gen.sh
#   GRPO_ARGS="trainer.total_training_steps=1" bash bench/gpu-smoke.sh
#   PARTS=grpo bash bench/gpu-smoke.sh actor_rollout_ref.rollout.n=4
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PARTS=${PARTS:-}
if [ $# -gt 0 ] && [ "$(wc -w <<< "$PARTS")" -ne 1 ]; then
  echo "gpu-smoke: command-line arguments go to one part: set PARTS to it (or use GEN_ARGS, SFT_ARGS, GRPO_ARGS)" >&2
  exit 2
fi

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-smoke: no GPU visible (nvidia-smi -L fails); run this on a GPU node" >&2
  exit 2
fi

shopt -s nullglob
scripts=("$HERE"/gpu/*.sh)
if [ ${#scripts[@]} -eq 0 ]; then
  echo "gpu-smoke: no bench/gpu/*.sh parts found" >&2
  exit 2
fi

failed=()
passed=()
for script in "${scripts[@]}"; do
  name="$(basename "$script" .sh)"
  if [ -n "$PARTS" ] && [[ " $PARTS " != *" $name "* ]]; then
    continue
  fi
  echo "== gpu-smoke: $name ==" >&2
  start=$SECONDS
  var="$(tr '[:lower:]' '[:upper:]' <<< "$name")_ARGS"
  # shellcheck disable=SC2206  # word splitting of the part's own arguments is intended
  part_args=(${!var:-} "$@")
  if bash "$script" "${part_args[@]}"; then
    passed+=("$name ($((SECONDS - start)) s)")
  else
    failed+=("$name (exit $?, $((SECONDS - start)) s)")
  fi
done

echo "gpu-smoke: passed: ${passed[*]:-none}" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu-smoke: FAILED: ${failed[*]}" >&2
  exit 1
fi
