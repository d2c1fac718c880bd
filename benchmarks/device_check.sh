#!/usr/bin/env bash
# The prepared command for a lent GPU (docs/gpu.md): the device report with the right settings
# and a hard time limit, from the source tree, installing nothing.
#
#   bash benchmarks/device_check.sh [OUT_DIR] [extra device_report arguments, e.g. --quick]
#
# Writes OUT_DIR/report.md, OUT_DIR/report.json and OUT_DIR/log.txt (default OUT_DIR: $OUT when
# set, as on the device machine, else ./device_report). The report is rewritten after every
# section, so a run stopped by the time limit still leaves what it measured. Exit status: the
# report's (non-zero only when a section crashed), 124 when the time limit stopped it.
set -u
cd "$(dirname "$0")/.."
out="${1:-${OUT:-device_report}}"
shift || true
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # jax and torch share the accelerator's memory
export TORCHINIT_COMPILE=0                   # the measured torchinit path is the default (eager) one
export PYTHONUNBUFFERED=1
limit="${DEVICE_CHECK_TIMEOUT:-540}"         # seconds: 9 minutes, inside a 10-minute device call
PY="${PYTHON:-python}"                        # the interpreter that has torch and jax
"$PY" - <<'PY' | tee "$out/log.txt"
import torch, jax
print(f"torch {torch.__version__} cuda={torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else ""))
print(f"jax {jax.__version__} backend={jax.default_backend()} devices={jax.devices()}")
PY
timeout --signal=INT --kill-after=20 "$limit" "$PY" -m parity_tests.device_report --out "$out" "$@" 2>&1 \
  | tee -a "$out/log.txt"
status=${PIPESTATUS[0]}
echo "device_check: exit status $status; report in $out/report.md" | tee -a "$out/log.txt"
exit "$status"
