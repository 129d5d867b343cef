#!/usr/bin/env bash
# Check the vLLM path on one GPU box with a small model of your choice.
#
#   pip install -e ".[gpu]"                       # ray[llm]: vLLM 0.29 on torch 2.13
#   scripts/gpu_smoke.sh /models/Qwen2.5-0.5B-Instruct [--tp 1]
#
# Runs our request rows through Ray Data LLM's vLLM processor (generation, then the judge
# stage with the additive rubric) and prints the checks; exits non-zero if one fails.
# No download: the model must be a local Hugging Face directory with a chat template.
# `--engine hf` runs the same checks on the CPU engine, `--device cpu` on vLLM's CPU build
# (the test suite does both); `--keep-alive` runs them on one kept pool (engine actors that
# outlive the stage).
set -euo pipefail
if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}"
if [[ " $* " != *" --engine hf "* ]]; then
  if [[ " $* " != *" --device cpu "* ]]; then
    command -v nvidia-smi >/dev/null || { echo "error: no nvidia-smi: this check needs a GPU" >&2; exit 2; }
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  fi
  "$PYTHON" -c "import vllm, ray.data.llm; print('vllm', vllm.__version__)" \
    || { echo "error: vLLM is not installed: make install (pip install -e '.[gpu]' on a GPU box)" >&2; exit 2; }
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PYTHON" scripts/gpu_smoke.py "$@"
