#!/usr/bin/env bash
# The checks that need a GPU, in one go: the CUDA tests, `reseg benchmark --device cuda`, and the
# synthetic demo trained on the GPU (the CPU recipe, then a 6x longer run on the standard scenes with the
# previous demo recipe). Results land in OUT_DIR.
#   tools/cuda_checks.sh [OUT_DIR [STEP ...]]   (default work_dirs/cuda_checks; steps: tests bench bench16 demo compile)
# PYTHON picks the interpreter (default python3); the repo must be importable (pip install -e .).
set -u
OUT_DIR=${1:-work_dirs/cuda_checks}
shift || true
STEPS=" ${*:-tests bench bench16 demo compile} "
want() { [[ $STEPS == *" $1 "* ]]; }
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1
step() { echo "== $(date +%T) $*"; }

step "GPU"
nvidia-smi -L || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

if want tests; then
step "CUDA tests"
timeout 300 $PY -m pytest -q tests/test_cuda.py tests/test_predictor.py 2>&1 | tail -25

fi

if want bench; then
step "benchmark (CUDA, 360x480 batch 4)"
timeout 400 $PY -m reseg benchmark --device cuda --json "$OUT_DIR/bench_cuda.json" > "$OUT_DIR/bench_cuda.md"
cat "$OUT_DIR/bench_cuda.md"

fi

if want bench16; then
step "ReNet cells and models at batch 16 (the minGRU targets: ReSeg vs U-Net at batch 4 and 16)"
timeout 300 $PY -m reseg benchmark --device cuda --only renet models head_to_head --batch 16 \
    --json "$OUT_DIR/bench_cuda_b16.json" > "$OUT_DIR/bench_cuda_b16.md"
cat "$OUT_DIR/bench_cuda_b16.md"

fi

if want demo; then
step "demo recipe on CUDA"
t0=$SECONDS
timeout 300 $PY -m reseg train configs/reseg_synthetic.yaml --device cuda \
    --work-dir "$WORK/demo" --no-progress --set data.num_workers=6 2>&1 | grep -E "val @|finished|wall|Error" | tail -8
echo "demo wall $((SECONDS - t0)) s"
cp "$WORK/demo/metrics.jsonl" "$OUT_DIR/demo_metrics.jsonl" 2>/dev/null

step "longer run on the standard scenes (6x the demo's images, 2000 training images, the previous demo recipe)"
$PY -m reseg make-synthetic --out "$WORK/syn2k" --size 120 160 --train 2000 --val 60 --test 0 --seed 0 | tail -1
t0=$SECONDS
timeout 400 $PY -m reseg train configs/reseg_synthetic.yaml --device cuda \
    --work-dir "$WORK/long" --no-progress --set data.root="$WORK/syn2k" "data.synthetic_sizes=[2000,60,0]" \
    data.synthetic_difficulty=standard data.class_weights=none optim.lr=4e-3 \
    data.batch_size=8 data.num_workers=6 train.max_iters=2400 train.val_interval=400 2>&1 \
    | grep -E "val @|finished|wall|Error" | tail -12
echo "long wall $((SECONDS - t0)) s"
cp "$WORK/long/metrics.jsonl" "$OUT_DIR/long_metrics.jsonl" 2>/dev/null
fi
rm -rf "$WORK"

if want compile; then
step "fast inference path with torch.compile"
timeout 150 $PY -m reseg benchmark --device cuda --only predictor --compile --json "$OUT_DIR/bench_cuda_compile.json" \
    | tail -8
fi
step "done"
