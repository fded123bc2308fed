#!/usr/bin/env bash
# One prepared run of the GPU checks on a lent CUDA machine (see docs/performance.md, "GPU").
#
# Runs, each under its own time limit so one that hangs leaves the rest their time:
# in this order (the most needed first; DEADLINE cuts the tail):
#   1. the GPU tests (pytest -m gpu tests/gpu)
#   2. benchmarks/train_speed.py --device cuda --fp32 --compile: explore's trainer (training
#      steps as CUDA graph replays, bf16 autocast), its steps launched eagerly, fp32, compiled,
#      and the DataLoader loop
#   3. a default `explore study run --device cuda` of a few trials, then `study show`, and
#      benchmarks/epoch_bookkeeping.py --device cuda (state saves every epoch vs every second)
#   4. benchmarks/precision.py --device cuda (fp32 vs bf16 by model size), then
#      benchmarks/cost_model.py --device cuda, fp32 then bf16 (the CUDA default; CUDA graphs)
#   5. benchmarks/throughput_stability.py --device cuda (10 fresh processes, CUDA graphs)
#   6. optional (EXTRA_CPU=1): train_speed.py's whole-machine CPU comparison on the host's cores
#
# Usage: OUT=/some/dir bash benchmarks/gpu_session.sh     (logs: $OUT/*.txt)
# Python packages the machine lacks can be put as wheels in .whl/ (installed to /tmp/site).
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/gpu-logs}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -z "${SKIP_WHL:-}" ] && compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$REPO
else
    export PYTHONPATH=$REPO
fi
PY=${PY:-python3}

DEADLINE=${DEADLINE:-500}  # seconds for the whole script: later steps get what is left

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    local left=$((DEADLINE - SECONDS - 5))
    if [ "$left" -lt 20 ]; then
        echo "== $name: skipped, ${left}s left of DEADLINE=${DEADLINE}s" | tee -a "$OUT/skipped.txt"
        return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    local started=$SECONDS
    echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/$name.txt"
    timeout --kill-after=10 "$limit" "$@" >>"$OUT/$name.txt" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - started)) s" | tee -a "$OUT/$name.txt"
    tail -n "${TAIL:-25}" "$OUT/$name.txt"
}

{
    date -u
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    $PY -c "import sys, torch, optuna; print(sys.version.split()[0], 'torch', torch.__version__,
'optuna', optuna.__version__, torch.cuda.get_device_name(0))"
    nproc
    grep -m1 "model name" /proc/cpuinfo
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step pytest_gpu "${T_PYTEST:-200}" $PY -m pytest -m gpu tests/gpu -q -p no:cacheprovider
step train_speed "${T_TRAIN:-170}" $PY benchmarks/train_speed.py --device cuda --repeats 2 \
    --fp32 ${TRAIN_COMPILE:---compile}
STUDY_DIR=$(mktemp -d)
step study "${T_STUDY:-80}" bash -c "cd $STUDY_DIR && timeout -s INT ${T_STUDY_RUN:-60} \
    $PY $REPO/cli.py study run --device cuda --trials ${STUDY_TRIALS:-12} --name gpu;
    $PY $REPO/cli.py study show gpu"
step bookkeeping "${T_BOOKKEEPING:-70}" $PY benchmarks/epoch_bookkeeping.py --device cuda \
    --models default --repeats 2 --trials 3
step precision "${T_PRECISION:-110}" $PY benchmarks/precision.py --device cuda
step cost_model_fp32 "${T_COST:-80}" $PY benchmarks/cost_model.py --device cuda \
    --rounds "${COST_ROUNDS:-2}" --precision fp32
step cost_model "${T_COST:-80}" $PY benchmarks/cost_model.py --device cuda \
    --rounds "${COST_ROUNDS:-2}"
step stability "${T_STABILITY:-90}" $PY benchmarks/throughput_stability.py --device cuda
if [ "${EXTRA_CPU:-0}" = 1 ]; then
    step machine_cpu "${T_CPU:-150}" $PY benchmarks/train_speed.py --no-per-process --repeats 2 \
        --startup 8
fi
echo "== all steps done"
