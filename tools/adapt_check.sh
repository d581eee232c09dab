#!/usr/bin/env bash
# Test-time adaptation on a drive the checkpoints never trained on: what `reseg evaluate --adapt-bn` gains,
# and whether frames of a drive adapt the model for the rest of it (`reseg adapt` on the drive's first half
# of frames, scored on its second half, against adapting on the scored frames themselves).
#
#   tools/adapt_check.sh CAMVID_ROOT DRIVE CHECKPOINT...      e.g. ... ../camvid 0006R0 work_dirs/x/best.pt
#
# Each checkpoint's reports go to <its folder>/adapt_check/ (adapt_check_wW/ with ADAPT_WEIGHT=W, the new
# statistics' share; default: the commands' own); the table (mIoU %, one row per checkpoint) is printed and
# written to <first checkpoint's folder>/<that folder>/table_DRIVE.md. PYTHON=... picks the Python.
# SELF_TRAIN=N adds N steps of self-training to every adaptation (`reseg adapt --self-train N`; reports in
# self_train_N/): "adapted on it" is then a checkpoint adapted on the whole drive, and the 2nd half adapted
# on itself is skipped ("-"), which would cost a third training.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CAMVID_ROOT DRIVE CHECKPOINT..." >&2
    exit 2
fi
root=$1
drive=$2
shift 2
PY=${PYTHON:-python}
weight=()
sub=adapt_check
if [ -n "${ADAPT_WEIGHT:-}" ]; then
    weight=(--adapt-weight "$ADAPT_WEIGHT")
    sub=adapt_check_w$ADAPT_WEIGHT
fi
train=()
if [ -n "${SELF_TRAIN:-}" ]; then
    train=(--self-train "$SELF_TRAIN")
    sub=$sub/self_train_$SELF_TRAIN
fi

mapfile -t frames < <(find "$root/train" "$root/val" -maxdepth 1 -name "${drive}_*.png" -printf '%f\n' | sort)
if [ "${#frames[@]}" -lt 2 ]; then
    echo "$0: fewer than two frames of drive $drive under $root/train and $root/val" >&2
    exit 1
fi
half=$(( ${#frames[@]} / 2 ))
paths=()
for f in "${frames[@]}"; do
    if [ -f "$root/train/$f" ]; then paths+=("$root/train/$f"); else paths+=("$root/val/$f"); fi
done
early=("${paths[@]:0:half}")
late=$(printf "'%s'," "${frames[@]:half}" | sed "s/\.png',/',/g; s/,\$//")

miou() { "$PY" -c "import json,sys; print(f\"{100 * json.load(open(sys.argv[1]))['mIoU']:.2f}\")" "$1/metrics.json"; }
evaluate() { # checkpoint, out, extra args...
    local checkpoint=$1 out=$2
    shift 2
    if ! "$PY" -m reseg evaluate --checkpoint "$checkpoint" --out "$out" --workers 0 "$@" > "$out.log" 2>&1; then
        tail -5 "$out.log" >&2
        exit 1
    fi
    miou "$out"
}
adapt_on() { # checkpoint, out, images...: `reseg adapt` with this run's weight and self-training
    local checkpoint=$1 out=$2
    shift 2
    if ! "$PY" -m reseg adapt --checkpoint "$checkpoint" "$@" --out "$out" --overwrite \
        ${ADAPT_WEIGHT:+--weight "$ADAPT_WEIGHT"} "${train[@]}" > "${out%.pt}.log" 2>&1; then
        tail -5 "${out%.pt}.log" >&2
        exit 1
    fi
}

table=(
    "drive $drive (${#frames[@]} frames; halves of ${half} and $(( ${#frames[@]} - half ))), adaptation weight ${ADAPT_WEIGHT:-default}${SELF_TRAIN:+, self-training $SELF_TRAIN steps}"
    ""
    "| checkpoint | whole drive | + flip | adapted on it | adapted + flip | 2nd half | 2nd half, adapted on it | 2nd half, adapted on the 1st |"
    "|:--|--:|--:|--:|--:|--:|--:|--:|"
)
for ckpt in "$@"; do
    dir=$(dirname "$ckpt")/$sub
    mkdir -p "$dir"
    row="| $ckpt"
    only_late=(--set "data.val_sequences=[$late]")
    row+=" | $(evaluate "$ckpt" "$dir/plain")"
    row+=" | $(evaluate "$ckpt" "$dir/flip" --flip)"
    if [ -n "${SELF_TRAIN:-}" ]; then
        adapt_on "$ckpt" "$dir/adapted_whole.pt" "${paths[@]}"
        row+=" | $(evaluate "$dir/adapted_whole.pt" "$dir/adapted")"
        row+=" | $(evaluate "$dir/adapted_whole.pt" "$dir/adapted_flip" --flip)"
        row+=" | $(evaluate "$ckpt" "$dir/late" "${only_late[@]}") | -"
    else
        row+=" | $(evaluate "$ckpt" "$dir/adapted" --adapt-bn "${weight[@]}")"
        row+=" | $(evaluate "$ckpt" "$dir/adapted_flip" --adapt-bn "${weight[@]}" --flip)"
        row+=" | $(evaluate "$ckpt" "$dir/late" "${only_late[@]}")"
        row+=" | $(evaluate "$ckpt" "$dir/late_adapted" --adapt-bn "${weight[@]}" "${only_late[@]}")"
    fi
    adapt_on "$ckpt" "$dir/adapted_early.pt" "${early[@]}"
    row+=" | $(evaluate "$dir/adapted_early.pt" "$dir/late_adapted_early" "${only_late[@]}") |"
    table+=("$row")
    echo "$row"
done
first=$(dirname "$1")/$sub
printf '%s\n' "${table[@]}" > "$first/table_$drive.md"
echo "wrote $first/table_$drive.md"
