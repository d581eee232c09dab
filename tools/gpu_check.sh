#!/usr/bin/env bash
# The one prepared GPU run: every GPU figure of the project from one call, written to OUT as gpu_check.json
# and gpu_check.md (the table "On a GPU" in docs/performance.md quotes), with progress printed as it goes.
#
#   tools/gpu_check.sh OUT [--rehearsal] [--steps "env kernels bench camvid report"]
#
# Steps, in this order (about 8 minutes on one H200, plus the machine's start; each file lands in OUT as its
# step ends, so a run cut short keeps what finished, and `tools/gpu_check.py report --out OUT` redoes the table):
#   env      the Python environment, checked first: fails in seconds, naming what is missing
#   kernels  the Triton scan's tests and the other CUDA tests on CUDA (tests/test_scan_triton.py,
#            tests/test_cuda.py); if the scan's fail, the rest runs with RESEG_SCAN=blocked and OUT says so
#   camvid   CamVid on the GPU: configs/reseg_skip_camvid_gpu.yaml and configs/unet_vgg16_camvid_gpu.yaml,
#            CAMVID_BUDGET each (default 70s), scored with `reseg evaluate` on val at 360x480 (OUT/camvid_*.json)
#   bench    ReNet layer (cuDNN GRU, blocked minGRU, Triton minGRU; fwd and fwd+bwd), the Triton tile sizes,
#            ReNet's share of minGRU ReSeg inference, four models at 360x480 batch 16 and 1024x2048 batch 2
#            (inference fp32 / bf16 / + channels-last / CUDA graph, training step fp32 / bf16 + channels-last,
#            img/s and peak memory, timed interleaved, ratios to U-Net), `reseg video` end to end vs
#            model-only with the stage table, then torch.compile if time is left (OUT/gpu_bench.json)
#   report   OUT/gpu_check.json + OUT/gpu_check.md, the table printed last
#
# --rehearsal runs every step on the CPU at tiny sizes (CUDA-only parts skipped by name; the CamVid runs
# train 2 iterations on a generated CamVid-layout set, packed the same way), so no device minute is
# spent on a typo: tests/test_gpu_check.py runs it.
#
# The GPU machine's python3 has torch, torchvision, triton, onnxruntime and opencv but not albumentations
# or segmentation-models-pytorch. They travel as wheels in .whl/ (git-ignored), made here with:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     albumentations==2.0.8 albucore==0.0.24 segmentation-models-pytorch==0.6.0 pydantic==2.14.4 \
#     pydantic-core==2.50.5 annotated-types typing-inspection simsimd stringzilla
# and this script installs them into a temporary folder first. CamVid travels packed (JPEG frames at
# quality 90, labels as they are: `python tools/pack_camvid.py ../shared/camvid .camvid_pack`, 25 MiB;
# git-ignored, never committed); the CamVid figures say they were trained and scored on the packed copy.
# With the device tool: run `tools/gpu_check.sh $OUT` with carry [".whl", ".camvid_pack"].
set -u -o pipefail
cd "$(dirname "$0")/.."

OUT=${1:?usage: tools/gpu_check.sh OUT [--rehearsal] [--steps "env kernels bench camvid report"]}
shift
REHEARSAL=0
STEPS="env kernels bench camvid report"
while [ $# -gt 0 ]; do
    case "$1" in
        --rehearsal) REHEARSAL=1 ;;
        --steps) STEPS="$2"; shift ;;
        *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
want() { [[ " $STEPS " == *" $1 "* ]]; }
step() { echo "== $(date +%T) $*"; }
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1
BUDGET=${CAMVID_BUDGET:-70s}

if ! $PY -c "import albumentations, segmentation_models_pytorch" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    step "installing the carried wheels (.whl/) into $WORK/site"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl \
        || { echo "gpu_check: the wheels in .whl/ did not install" >&2; exit 3; }
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$REHEARSAL" = 1 ]; then
    DEVICE=cpu
    export RESEG_CPP_LOOPS=0 TRITON_INTERPRET=1  # no C++ build; kernels, if asked, run in the interpreter
else
    DEVICE=cuda
fi

if want env; then
    step "environment"
    $PY - "$DEVICE" <<'EOF' || exit 3
import importlib, sys
need = ["torch", "torchvision", "triton", "onnxruntime", "cv2", "albumentations", "segmentation_models_pytorch",
        "yaml", "numpy", "PIL", "tqdm", "matplotlib"]
missing = []
for name in need:
    try:
        importlib.import_module(name)
    except Exception as exc:
        missing.append(f"{name} ({type(exc).__name__}: {exc})")
if missing:
    sys.exit("gpu_check: missing Python packages: " + "; ".join(missing)
             + "\n  carry them as wheels in .whl/ (see this script's header)")
import torch, triton
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible to torch; use --rehearsal to run on the CPU")
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, triton {triton.__version__}, CUDA "
      f"{torch.version.cuda}, GPU {gpu}")
EOF
    [ "$DEVICE" = cuda ] && { nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv || true; }
fi

if want kernels; then
    step "Triton scan tests on $DEVICE"
    if ! timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_scan_triton.py 2>&1 | tail -15; then
        echo "gpu_check: the Triton scan's tests FAILED: the rest runs with RESEG_SCAN=blocked"
        export RESEG_SCAN=blocked
        echo "Triton scan tests failed; figures below use RESEG_SCAN=blocked" > "$OUT/KERNELS_FAILED"
    fi
    if [ "$DEVICE" = cuda ]; then
        step "the other CUDA tests"
        timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -8 \
            || echo "gpu_check: tests/test_cuda.py FAILED or ran out of time"
    fi
fi

if want camvid; then
    if [ "$REHEARSAL" = 1 ]; then
        step "CamVid rehearsal: a generated CamVid-layout set, packed like the real one"
        $PY -m reseg make-synthetic --out "$WORK/syn" --train 4 --val 2 --test 0 --size 64 96 --workers 1 >/dev/null \
            || { echo "gpu_check: make-synthetic failed" >&2; exit 4; }
        $PY tools/pack_camvid.py "$WORK/syn" "$WORK/camvid" || exit 4
        DATA="$WORK/camvid"
        TRAIN_SET=(train.time_budget=null train.max_iters=2 train.val_interval=2 train.checkpoint_interval=2
                   data.batch_size=2 data.val_batch_size=2 data.num_workers=0 "data.crop_size=[64,96]"
                   train.amp=false train.channels_last=false)
    else
        DATA=${CAMVID:-.camvid_pack}
        [ -d "$DATA/train" ] || { echo "gpu_check: no packed CamVid at $DATA (see the header)" >&2; exit 4; }
        TRAIN_SET=(train.time_budget="$BUDGET" data.num_workers=12)
    fi
    for run in reseg_skip:configs/reseg_skip_camvid_gpu.yaml unet_vgg16:configs/unet_vgg16_camvid_gpu.yaml; do
        name=${run%%:*}
        config=${run#*:}
        step "CamVid: train $name ($config) on $DEVICE"
        timeout 200 $PY -m reseg train "$config" --device "$DEVICE" --work-dir "$WORK/$name" --no-progress \
            --set data.root="$DATA" "${TRAIN_SET[@]}" 2>&1 | grep -E "val @|calibrat|budget|finished|wall|Error|error" | tail -8
        step "CamVid: evaluate $name on val"
        timeout 120 $PY -m reseg evaluate --checkpoint "$WORK/$name/best.pt" --out "$WORK/eval_$name" \
            --device "$DEVICE" 2>&1 | tail -2
        budget=$BUDGET
        [ "$REHEARSAL" = 1 ] && budget="2 iterations (rehearsal)"
        $PY tools/gpu_check.py camvid --out "$OUT" --name "$name" --work-dir "$WORK/$name" \
            --eval-dir "$WORK/eval_$name" --budget "$budget"
    done
fi

if want bench; then
    step "benchmarks"
    args=(--out "$OUT")
    [ "$REHEARSAL" = 1 ] && args+=(--rehearsal) || args+=(--deadline 150)
    timeout 300 $PY tools/gpu_check.py bench "${args[@]}" 2>&1 | grep -v "Warning\|warn(" \
        || echo "gpu_check: the benchmark step stopped early; $OUT/gpu_bench.json keeps what finished"
fi

if want report; then
    step "report"
    $PY tools/gpu_check.py report --out "$OUT"
fi
step "done: $OUT/gpu_check.json, $OUT/gpu_check.md"
