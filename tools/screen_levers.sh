#!/usr/bin/env bash
# Screen the accuracy levers on CamVid's unseen drive (0006R0) at one time budget: the two unseen-drive
# recipes and every config in configs/levers/ train one after another for BUDGET each, `reseg evaluate`
# scores each run's best.pt on the unseen drive, and one table of the scores is printed and written to
# OUT/levers.md.
#
#   tools/screen_levers.sh CAMVID_ROOT [OUT] [BUDGET]        (defaults: work_dirs/levers, 20m)
#
# Run it alone on the machine: the time budget plans each run's length on the pace it measures, so
# anything else running beside it changes the runs, not only their speed. A run whose work dir already
# holds last.pt is resumed (a finished one is left as it is), so a screening cut short continues where it
# stopped. DRY_RUN=1 prints the commands instead of running them; TABLE_ONLY=1 only redoes the table from
# the runs in OUT; ONLY="name ..." keeps only the runs of those config names (in this order); SEEDS="0 1"
# trains each config once per seed (OUT/NAME_seedS, train.seed=S; without SEEDS, OUT/NAME with the config's
# own seed) and adds each config's mean and spread over its seeds to the table; VALIDATION="unseen same-drive"
# also trains each config validated on CamVid's own val split (OUT/NAME_samedrive, data.val_sequences=null:
# the same-drive protocol, trained on the train split) and puts the two validations side by side; drive-SEQUENCE
# (e.g. drive-0016E5, OUT/NAME_drive0016E5) validates on that whole drive instead, trained on the other drives of
# train and val (leave one drive out: a second unseen drive besides 0006R0), and a config validated on several
# drives gets the mean over them (each drive's seeds averaged first); PYTHON picks the interpreter. Runs not
# finished yet are named under the table and left out of it. Each
# run's log, with the machine's load average every minute, is OUT/NAME.log.
#
# The synthetic-pretraining levers (levers/*_synthinit.yaml) run in two stages inside the one budget: the
# stage-1 config whose run the lever's train.init_from names (configs/*_synthetic_pretrain.yaml: the lever's own
# model, e.g. at full width, or its own scale) trains on the generated streets for a quarter of BUDGET (OUT/<that config's name>; generating its scenes the
# first time is not charged to the budget), then the lever fine-tunes from that run's best.pt for the rest.
# PRETRAIN_SHARE=50 gives the first stage that percentage of BUDGET instead (1 to 99; both stages' work dirs then
# end in _pre50, before any _seedS, so they never resume the quarter's runs).
set -euo pipefail

ROOT=${1:?usage: tools/screen_levers.sh CAMVID_ROOT [OUT] [BUDGET]}
OUT=${2:-work_dirs/levers}
BUDGET=${3:-20m}
PY=${PYTHON:-python3}
CONFIGS_DIR="$(cd "$(dirname "$0")/.." && pwd)/configs"

CONFIGS=("$CONFIGS_DIR"/reseg_skip_camvid_cpu_unseen.yaml)
for lever in strongaug photometric ema smooth dropout synthinit ema_synthinit fullwidth classmix classmix_ema wd lovasz medfreq ibn closer closer_classmix native_classmix wholeframe_classmix closer_classmix_synthinit closer_classmix_regularised_synthinit closer_classmix_closersynth_synthinit closer_classmix_fullwidth_synthinit closer_classmix_synthmix_synthinit closer_classmix_lowlr_synthinit all; do CONFIGS+=("$CONFIGS_DIR/levers/reseg_skip_unseen_$lever.yaml"); done
CONFIGS+=("$CONFIGS_DIR"/unet_vgg16_camvid_cpu_unseen.yaml)
for lever in classmix classmix_ema ibn closer closer_classmix native_classmix wholeframe_classmix closer_classmix_synthinit closer_classmix_synthmix_synthinit all; do CONFIGS+=("$CONFIGS_DIR/levers/unet_vgg16_unseen_$lever.yaml"); done

SHARE=${PRETRAIN_SHARE:-25}
[[ "$SHARE" =~ ^[1-9][0-9]?$ ]] || { echo "PRETRAIN_SHARE: a whole percentage from 1 to 99, got $SHARE" >&2; exit 2; }
share_suffix=""
[[ "$SHARE" != 25 ]] && share_suffix="_pre$SHARE"

# BUDGET split once into the synthetic levers' pretraining share and the fine-tuning rest, in seconds
read -r PRE_SECONDS REST_SECONDS < <("$PY" -c 'import sys; from reseg.engine.budget import parse_duration; s = round(parse_duration(sys.argv[1])); p = s * int(sys.argv[2]) // 100; print(p, s - p)' "$BUDGET" "$SHARE")

run() {
    echo "+ $*"
    if [[ "${DRY_RUN:-0}" != 1 ]]; then "$@"; fi
}

if [[ -n "${ONLY:-}" ]]; then
    picked=()
    for name in $ONLY; do
        match=""
        for config in "${CONFIGS[@]}"; do [[ "$(basename "$config" .yaml)" == "$name" ]] && match=$config; done
        [[ -n "$match" ]] || { echo "ONLY: no config named $name (names: $(for c in "${CONFIGS[@]}"; do basename "$c" .yaml; done | tr '\n' ' '))" >&2; exit 2; }
        picked+=("$match")
    done
    CONFIGS=("${picked[@]}")
fi

# each synthetic lever's stage-1 config, the one whose run its init_from names (OUT/<stage-1 config>/best.pt),
# found before anything trains, so a lever without one stops the screening at once, not hours in
declare -A STAGE1
for config in "${CONFIGS[@]}"; do
    [[ "$config" == *_synthinit.yaml ]] || continue
    STAGE1[$config]=$(sed -n 's|^ *init_from: *[^ #]*/\([^/ #]*\)/best\.pt *$|\1|p' "$config" | head -n1)
    [[ -n "${STAGE1[$config]}" && -f "$CONFIGS_DIR/${STAGE1[$config]}.yaml" ]] || {
        echo "$config: a synthetic lever names its stage 1 as train.init_from: .../<stage-1 config>/best.pt" >&2
        exit 2
    }
done

RUNS=()
for config in "${CONFIGS[@]}"; do
  config_name=$(basename "$config" .yaml)
  for validation in ${VALIDATION:-unseen}; do
  for seed in ${SEEDS:--}; do
    name=$config_name
    seeding=()
    validating=()
    seed_suffix=""
    [[ "$seed" != - ]] && { seed_suffix="_seed$seed"; seeding=("train.seed=$seed"); }
    case "$validation" in
        unseen) ;;
        same-drive) name="${name}_samedrive"; validating=("data.val_sequences=null") ;;
        drive-?*) name="${name}_drive${validation#drive-}"; validating=("data.val_sequences=[${validation#drive-}]") ;;
        *) echo "VALIDATION: unseen, same-drive or drive-SEQUENCE (e.g. drive-0016E5), got $validation" >&2; exit 2 ;;
    esac
    [[ "$config" == *_synthinit.yaml ]] && name="$name$share_suffix"
    name="$name$seed_suffix"
    work="$OUT/$name"
    RUNS+=("$work")
    [[ "${TABLE_ONLY:-0}" == 1 ]] && continue
    resume=()
    [[ -f "$work/last.pt" ]] && resume=(--resume)
    log=/dev/stdout
    if [[ "${DRY_RUN:-0}" != 1 ]]; then
        log="$OUT/$name.log"
        mkdir -p "$OUT"
        (while sleep 60; do echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at $(date +%T)"; done) >> "$log" &
        monitor=$!
    fi
    budget=("train.time_budget=$BUDGET")
    if [[ "$config" == *_synthinit.yaml ]]; then  # two stages sharing the budget: pretrain, then fine-tune from it
        stage1=${STAGE1[$config]}
        pretrain="$OUT/$stage1$share_suffix$seed_suffix"  # shared by both validations and by the model's synthinit levers
        pre_resume=()
        [[ -f "$pretrain/last.pt" ]] && pre_resume=(--resume)
        run "$PY" -m reseg train "$CONFIGS_DIR/$stage1.yaml" --work-dir "$pretrain" \
            --no-progress "${pre_resume[@]}" --set "train.time_budget=${PRE_SECONDS}s" "${seeding[@]}" >> "$log" 2>&1
        budget=("train.time_budget=${REST_SECONDS}s" "train.init_from=$pretrain/best.pt")
    fi
    run "$PY" -m reseg train "$config" --work-dir "$work" --no-progress "${resume[@]}" \
        --set "data.root=$ROOT" "${budget[@]}" "${seeding[@]}" "${validating[@]}" >> "$log" 2>&1
    run "$PY" -m reseg evaluate --checkpoint "$work/best.pt" --out "$work/eval_best" >> "$log" 2>&1
    [[ "${DRY_RUN:-0}" != 1 ]] && kill "$monitor"
  done
  done
done

[[ "${DRY_RUN:-0}" == 1 ]] && exit 0
"$PY" - "$OUT/levers.md" "$BUDGET" "$CONFIGS_DIR/reseg_skip_camvid_cpu_unseen.yaml" "${RUNS[@]}" <<'EOF'
"""The screening's tables: each run's levers, length and best.pt's scores on the drive it was validated on;
with several seeds of a config, its mean and spread; with both validations of a config, the two side by side."""
import json
import re
import statistics
import sys
from pathlib import Path

import yaml
from reseg.config import load_config
from reseg.io import write_text

out, budget, recipe, runs = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), [Path(r) for r in sys.argv[4:]]
RECIPE = load_config(recipe).to_dict()  # what the levers change; the U-Net recipe shares its data and schedule


def scale(data: dict) -> str:
    """The scale lever: the range frames are rescaled in for training, the crop (where it is not the recipe's)
    and the size evaluation runs at."""
    lo, hi = data["scale_range"]
    size = "x".join(str(v) for v in data["eval_size"]) if data["eval_size"] else "full size"
    crop = "x".join(str(v) for v in data["crop_size"])
    cropped = f", crop {crop}" if data["crop_size"] != RECIPE["data"]["crop_size"] else ""
    return f"scale {lo:g}-{hi:g}{cropped}, eval {size}"


def levers(cfg: dict) -> str:
    named = [
        f"augment {cfg['data']['augment']}" if cfg["data"]["augment"] != "standard" else "",
        f"classmix {cfg['data'].get('class_mix', 0):g}" if cfg["data"].get("class_mix") else "",
        f"ema {cfg['train']['ema_decay']:g}" if cfg["train"]["ema_decay"] else "",
        f"smoothing {cfg['loss']['label_smoothing']:g}" if cfg["loss"]["label_smoothing"] else "",
        f"dropout {cfg['model']['decoder_dropout']:g}" if cfg["model"]["decoder_dropout"] else "",
        f"weight decay {cfg['optim']['weight_decay']:g}" if cfg["optim"]["weight_decay"] != RECIPE["optim"]["weight_decay"] else "",
        f"lr {cfg['optim']['lr']:g}" if cfg["optim"]["lr"] != RECIPE["optim"]["lr"] else "",
        f"lovasz {cfg['loss']['lovasz_weight']:g}" if cfg["loss"].get("lovasz_weight") else "",
        f"ibn {cfg['model']['ibn_blocks']} blocks" if cfg["model"].get("ibn_blocks") else "",
        f"{cfg['data']['class_weights']} weights" if cfg["data"]["class_weights"] != RECIPE["data"]["class_weights"] else "",
        f"from {Path(cfg['train']['init_from']).parent.name}" if cfg["train"]["init_from"] else "",
        f"{cfg['data']['synthetic_mix']:g} generated" if cfg["data"].get("synthetic_mix") else "",
        scale(cfg["data"]) if scale(cfg["data"]) != scale(RECIPE["data"]) else "",
        # the ReSeg recipes' encoder is half width
        f"width {cfg['model']['encoder_width']:g}"
        if cfg["model"]["name"] == "reseg" and cfg["model"]["encoder_width"] != 0.5
        else "",
    ]
    return ", ".join(x for x in named if x) or "-"


def miou(run: Path) -> float:
    return 100 * SCORES[run]["mIoU"]


def config_name(run: Path) -> str:
    return re.sub(r"(_samedrive|_drive[0-9A-Za-z]+)?(_pre\d+)?(_seed\d+)?$", "", run.name)


rows = [f"CamVid, {budget} each, `reseg evaluate` on best.pt (selected on the validation it names)", "",
        "| run | model | levers | validated on | iterations | best at | mIoU | aAcc |",
        "|:--|:--|:--|:--|--:|--:|--:|--:|"]
unfinished = [run for run in runs if not (run / "eval_best" / "metrics.json").is_file()]
runs = [run for run in runs if run not in unfinished]  # a table mid-screening: what has finished so far
SCORES = {run: json.loads((run / "eval_best" / "metrics.json").read_text()) for run in runs}  # read once
validation = {}
for run in runs:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    sequences = cfg["data"].get("val_sequences")
    validation[run] = f"unseen drive {'+'.join(sequences)}" if sequences else "same drive (CamVid val)"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    vals = [r for r in records if r.get("type") == "val"]
    best = max(vals, key=lambda r: r["mIoU"]) if vals else {}
    rows.append(f"| {run.name} | {cfg['model']['name']} | {levers(cfg)} | {validation[run]} | "
                f"{vals[-1]['iter'] if vals else '-'} | {best.get('iter', '-')} | {miou(run):.2f} | "
                f"{100 * SCORES[run]['aAcc']:.2f} |")

groups = {}
for run in runs:
    groups.setdefault((config_name(run), validation[run]), []).append(run)
several = {key: group for key, group in groups.items() if len(group) > 1}
if several:
    rows += ["", "| config | validated on | seeds | mean mIoU | spread (min to max) | standard deviation |",
             "|:--|:--|--:|--:|--:|--:|"]
    for (name, where), group in several.items():
        m = [miou(run) for run in group]
        rows.append(f"| {name} | {where} | {len(m)} | {statistics.mean(m):.2f} | {min(m):.2f} to {max(m):.2f} | "
                    f"{statistics.stdev(m):.2f} |")
side_by_side = []  # each config's same-drive mean beside its mean on each unseen drive
left_out = []  # leave one drive out: each drive's mean over seeds, then their mean, so no drive counts twice
for name in dict.fromkeys(name for name, _ in groups):
    same = [miou(r) for (n, where), g in groups.items() if n == name and where.startswith("same") for r in g]
    drives = {where.removeprefix("unseen drive "): statistics.mean(miou(r) for r in group)
              for (n, where), group in groups.items() if n == name and where.startswith("unseen")}
    if same:
        a = statistics.mean(same)
        side_by_side += [f"| {name} | {drive} | {a:.2f} | {b:.2f} | {a - b:.2f} |" for drive, b in drives.items()]
    if len(drives) > 1:
        each = ", ".join(f"{drive} {m:.2f}" for drive, m in drives.items())
        left_out.append(f"| {name} | {len(drives)} | {statistics.mean(drives.values()):.2f} | {each} |")
if side_by_side:
    rows += ["", "| config | unseen drive | same drive (CamVid val) mIoU | unseen drive mIoU | gap |",
             "|:--|:--|--:|--:|--:|", *side_by_side]
if left_out:
    rows += ["", "| config | unseen drives | mean over the drives | each drive (mean over its seeds) |",
             "|:--|--:|--:|:--|", *left_out]
if unfinished:
    rows += ["", "Not finished yet (no eval_best/metrics.json): " + ", ".join(run.name for run in unfinished)]
write_text(out, "\n".join(rows) + "\n")  # atomically
print("\n".join(rows))
EOF
