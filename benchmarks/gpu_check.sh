#!/usr/bin/env bash
# The GPU checks of the Triton kernels, for a machine with a CUDA GPU. Run from the
# repository root:   OUT=/some/dir bash benchmarks/gpu_check.sh
#
# 1. Makes sure torch is a CUDA build of the pinned version (PyPI's Linux wheels of torch
#    are CUDA builds; a "+cpu" wheel found through a local wheel folder or the PyTorch CPU
#    index would not use the GPU, so pip is run without any configured index or links),
#    and installs sparc with the test and gpu extras (the demo extras — backbones, the
#    demo data set — play no part in these checks). Skipped when both are already there
#    (an offline machine with them preinstalled).
# 2. Runs the Triton kernel tests (every kernel against the PyTorch oracle, on cuda) and
#    the CPU kernel and oracle tests.
# 3. Times the training step on cuda with benchmarks/train_step.py: per kernel path, fp32
#    and bf16, batch 256 and 4096, with latents dead and under autocast.
# Everything is written under $OUT (default: ./gpu_check_out); the exit status is that of
# the tests. Once installed the run takes a few minutes (each timing at most 150 s).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
TORCH_VERSION=2.13.0
# This checkout's sparc, whether or not an install below happens (an offline machine).
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

# ---------------------------------------------------------------- 1. install
if ! nvidia-smi -L > "$OUT/gpus.txt" 2>&1; then
    # Before any install: on a machine without a GPU this script must not replace torch.
    log "no NVIDIA GPU visible (nvidia-smi -L failed); nothing done"
    exit 2
fi
have_cuda_torch() {
    python -c "import sys, torch; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' \
and torch.version.cuda and torch.cuda.is_available() else 1)" 2>/dev/null
}
{
    nvidia-smi
    if ! have_cuda_torch; then
        PIP_CONFIG_FILE=/dev/null python -m pip install --index-url https://pypi.org/simple \
            --force-reinstall "torch==$TORCH_VERSION"
    fi
    if ! python -c "import triton, numba, pytest, hypothesis" 2>/dev/null; then
        # torch is pinned so that the extras cannot swap the build just installed.
        python -m pip install -e ".[test,gpu]" "torch==$TORCH_VERSION"
    fi
    python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'triton', triton.__version__, 'gpu', torch.cuda.get_device_name())"
} > "$OUT/install.log" 2>&1
if ! have_cuda_torch; then
    log "no CUDA build of torch $TORCH_VERSION with a visible GPU; see $OUT/install.log"
    exit 2
fi
log "$(tail -n 1 "$OUT/install.log")"

# ---------------------------------------------------------------- 2. tests
# The Triton tests compare every kernel with the PyTorch oracle on cuda (none should skip
# on a GPU); -rs lists any skip with its reason.
timeout 240 python -m pytest tests/model/test_triton_kernels.py -rs -p no:cacheprovider \
    --junitxml="$OUT/triton_tests.xml" > "$OUT/triton_tests.log" 2>&1
rc=$?
log "triton tests (cuda): rc=$rc, $(tail -n 1 "$OUT/triton_tests.log")"
# The other kernel and oracle tests build CPU tensors only: run here, they check that the
# GPU install (and Triton importable in auto mode) leaves the CPU paths as they were.
timeout 150 python -m pytest tests/model/test_kernels.py tests/model/test_oracle.py -rs \
    -p no:cacheprovider > "$OUT/cpu_kernel_tests.log" 2>&1
rc2=$?
log "CPU kernel + oracle tests: rc=$rc2, $(tail -n 1 "$OUT/cpu_kernel_tests.log")"

# ---------------------------------------------------------------- 3. timings
# benchmarks/train_step.py on cuda: sparc per kernel path (PyTorch, Triton, each with the
# certified bf16 selection), the dense formulation, the floor and the encoder GEMM with its
# fraction of the measured matmul peak; fp32 and bf16 weights at batch 256 and 4,096, then
# 10% of latents dead, and sparc under bf16 autocast.
run_step() {  # name, then train_step.py's options
    local name=$1; shift
    timeout 150 python benchmarks/train_step.py --device cuda --steps 10 --dense-steps 3 "$@" \
        --json "$OUT/train_step_${name}.json" > "$OUT/train_step_${name}.log" 2>&1
    log "train_step.py $*: rc=$?"
    sed -n '/median ms/,$p' "$OUT/train_step_${name}.log" >> "$OUT/summary.txt"
}
for dtype in float32 bfloat16; do
    for B in 256 4096; do
        run_step "${dtype}_${B}" --dtype "$dtype" --batch-size "$B"
    done
done
run_step float32_4096_dead --batch-size 4096 --dead-fraction 0.1
run_step float32_4096_autocast --batch-size 4096 --autocast
exit $(( rc != 0 ? rc : rc2 ))
