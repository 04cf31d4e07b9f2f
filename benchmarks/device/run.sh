#!/usr/bin/env bash
# The one-shot GPU check: every cuda test and benchmark rnnbench needs, in one command that fits
# the device tool's 10-minute call (about 5-7 minutes on an H200). Run on the device machine
# from the repository root, after benchmarks/device/prepare.sh here, carrying its folders:
#     command: bash benchmarks/device/run.sh      carry: ["device-data", ".whl"]
# Dry run on CPU, tiny sizes:  DEVICE=cpu OUT=/tmp/devout bash benchmarks/device/run.sh
#
# Writes under $OUT (8 files at most come back): log.txt (everything), env.txt, tests.txt,
# units.md, population.txt, scale.md, speech.md, summary.txt (one line per step: ok, FAILED,
# TIMEOUT or SKIPPED, and seconds). Each step has its own timeout and the whole run a deadline,
# so a hang costs one step, not the call; a failing step does not stop the next.
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${OUT:?set OUT to the folder for the results}"
DEVICE=${DEVICE:-cuda}                                   # cuda, or cpu for the dry run
QUICK=${QUICK:-$([[ $DEVICE == cpu ]] && echo 1 || echo 0)}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-540}       # stop starting steps after this; the call limit is 600 s
STEPS=${STEPS:-}                # run only these steps (names as in summary.txt); empty: all
SITE=${SITE:-/tmp/site}         # where the carried wheels are installed

# Each step's sizes (QUICK=0: the paper's sizes), then each step's timeout in seconds.
if [[ $QUICK == 1 ]]; then
    TEST_ARGS=(-k "(run_unit and float64) or (without_noise and lstm) or train_command")
    UNITS_ARGS=(--task music --batch 1 --steps 10 --repeat 1)
    POP_ARGS=(--members 2 --epochs 1)
    SCALE_ARGS=(--members 1 2 --epochs 1)
    SPEECH_ARGS=(--units lstm --members 2 --updates 2 --limit 32)
    SPEECH_FULL_ARGS=(--units --members 2 --full-epoch tanh --limit 32)
else
    TEST_ARGS=()
    UNITS_ARGS=(--task music speech --batch 1 16 64 --steps 200 --repeat 5)
    POP_ARGS=(--members 10 --epochs 2)                   # 10 stacked vs 10 one after another
    SCALE_ARGS=(--members 1 10 100 --epochs 2)           # "100 stacked models: ~2 ms per model"
    SPEECH_ARGS=(--units lstm gru tanh --members 1 10 --updates 200)
    SPEECH_FULL_ARGS=(--units --members 10 --full-epoch lstm)   # checks the estimate
fi
T_ENV=${T_ENV:-60} T_TESTS=${T_TESTS:-170} T_UNITS=${T_UNITS:-120} T_POP=${T_POP:-120}
T_SCALE=${T_SCALE:-90} T_SPEECH=${T_SPEECH:-120} T_SPEECH_FULL=${T_SPEECH_FULL:-110}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1

STATUS=0
# step NAME FILE LIMIT [--optional] CMD...: run CMD with a timeout, its output teed (appended)
# into $OUT/FILE; skipped when the deadline is near (an --optional step needs its whole LIMIT).
step() {
    local name=$1 file=$2 limit=$3 optional=0 rc=0 t0=$SECONDS verdict
    shift 3
    if [[ ${1:-} == --optional ]]; then optional=1; shift; fi
    if [[ -n ${STEPS:-} && " $STEPS " != *" $name "* ]]; then return 0; fi
    local left=$(( BUDGET_S - SECONDS ))
    if (( left < 20 || (optional && left < limit) )); then
        echo "SKIPPED  $name (${left}s left of the budget)" | tee -a "$OUT/summary.txt"
        return 0
    fi
    (( limit > left - 5 )) && limit=$(( left - 5 ))
    echo
    echo "===== $name (timeout ${limit}s): $*"
    set +e
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$OUT/$file"
    rc=${PIPESTATUS[0]}
    set -e
    case $rc in
        0) verdict=ok ;;
        124|137) verdict=TIMEOUT; STATUS=1 ;;
        *) verdict="FAILED (exit $rc)"; STATUS=1 ;;
    esac
    printf '%-8s %s, %ss -> %s\n' "$verdict" "$name" $(( SECONDS - t0 )) "$file" \
        | tee -a "$OUT/summary.txt"
}

main() {
    echo "rnnbench device check: DEVICE=$DEVICE QUICK=$QUICK OUT=$OUT, $(date -u +%FT%TZ)"
    echo "===== setup"
    if [[ ${FORCE_WHEELS:-0} != 1 ]] && "$PY" -c "import soundfile, platformdirs" 2>/dev/null
    then
        echo "soundfile and platformdirs already importable: the carried wheels are not needed"
    elif compgen -G ".whl/*.whl" >/dev/null; then
        rm -rf "$SITE"
        if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
                .whl/*.whl; then
            # A wheel is a zip of files to put on the path; these four need nothing more.
            echo "WARNING: pip could not install .whl/*.whl; unpacking them into $SITE instead"
            for w in .whl/*.whl; do "$PY" -m zipfile -e "$w" "$SITE"; done
        fi
        ls "$SITE"
    else
        echo "WARNING: no .whl/ (run benchmarks/device/prepare.sh and carry .whl)"
    fi
    export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    if [[ ! -d device-data/music || ! -d device-data/fsdd/recordings ]]; then
        echo "ERROR: no device-data/ (run benchmarks/device/prepare.sh and carry device-data)"
        return 1
    fi
    export RNNBENCH_DATA=$PWD/device-data
    if [[ $DEVICE == cuda* ]] \
            && ! "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
        echo "ERROR: PyTorch sees no CUDA GPU: the cuda tests will skip, the benchmarks fail"
        STATUS=1
    fi
    export RNNBENCH_TEST_DEVICE=$DEVICE      # tests/nn/test_cuda.py's device under test
    local bench=(--device "$DEVICE")

    if command -v nvidia-smi >/dev/null; then
        step nvidia-smi env.txt 30 nvidia-smi
    fi
    step env env.txt "$T_ENV" "$PY" benchmarks/device/env_report.py

    step tests tests.txt "$T_TESTS" "$PY" -m pytest -q -p no:cacheprovider --durations=10 \
        tests/nn/test_cuda.py tests/cli/test_train.py::test_train_clear_errors \
        tests/cli/test_reproduce.py::test_reproduce_refuses_up_front_what_would_fail_every_run \
        "${TEST_ARGS[@]}"

    step units units.md "$T_UNITS" "$PY" benchmarks/units.py "${bench[@]}" "${UNITS_ARGS[@]}"

    step population population.txt "$T_POP" "$PY" benchmarks/population.py "${bench[@]}" \
        --backend torch --single-backend torch "${POP_ARGS[@]}"

    step scale scale.md "$T_SCALE" "$PY" benchmarks/device/population_scale.py "${bench[@]}" \
        --backend torch "${SCALE_ARGS[@]}"

    step speech speech.md "$T_SPEECH" "$PY" benchmarks/device/speech_epoch.py "${bench[@]}" \
        --backend torch "${SPEECH_ARGS[@]}"

    step speech-full-epoch speech.md "$T_SPEECH_FULL" --optional "$PY" \
        benchmarks/device/speech_epoch.py "${bench[@]}" --backend torch "${SPEECH_FULL_ARGS[@]}"

    echo
    echo "===== summary ($SECONDS s)"
    cat "$OUT/summary.txt"
    return "$STATUS"
}

for f in log.txt env.txt tests.txt units.md population.txt scale.md speech.md summary.txt; do
    rm -f "$OUT/$f"      # the steps append: start afresh when run again on the same folder
done
main 2>&1 | tee -a "$OUT/log.txt"     # exits with main's status (pipefail)
