#!/usr/bin/env bash
# The paper's four models on one feature store: global / local TopK × with / without the
# cross-reconstruction loss, each trained with the same settings, evaluated on the test
# split with `sparc eval`, and lined up with `sparc compare` (OUT/compare/compare.md).
#
#   experiments/four_variants.sh STORE OUT [sparc train flags ...]
#
# Flags after OUT go to every `sparc train` (e.g. --n-latents 512 --k 16 --epochs 60).
# Set EVAL_FLAGS for `sparc eval` (e.g. EVAL_FLAGS="--no-progress"). A finished run and
# an evaluation newer than its weights are kept (delete RUN/eval-test to evaluate again)
# and an interrupted run is resumed, so the script can simply be rerun.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 STORE OUT [sparc train flags ...]" >&2
    exit 2
fi
store=$1
out=$2
shift 2
read -r -a eval_flags <<< "${EVAL_FLAGS:-}"

declare -A variants=(
    [global-cross]="--topk global --cross-coef 1"
    [global-nocross]="--topk global --cross-coef 0"
    [local-cross]="--topk local --cross-coef 1"
    [local-nocross]="--topk local --cross-coef 0"
)
runs=()
for name in global-cross global-nocross local-cross local-nocross; do
    run="$out/$name"
    if [ -f "$run/model.safetensors" ]; then
        echo "== $name: trained already ($run)"
    elif [ -d "$run/checkpoint" ]; then
        echo "== $name: resuming"
        sparc train "$store" --out "$run" --resume
    else
        echo "== $name: training"
        # shellcheck disable=SC2086  # the variant's flags are words
        sparc train "$store" --out "$run" --overwrite ${variants[$name]} "$@"
    fi
    if [ "$run/eval-test/eval.json" -nt "$run/model.safetensors" ]; then
        echo "== $name: evaluated already ($run/eval-test)"
    else
        echo "== $name: evaluating"
        sparc eval "$run" --store "$store" --split test "${eval_flags[@]}"
    fi
    runs+=("$run")
done
sparc compare "${runs[@]}" --out "$out/compare"
