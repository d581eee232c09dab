"""Configs: _base_ merging, --set overrides, and errors that name the key, the file and the closest keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from reseg.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(REPO / "configs" / name)
    assert isinstance(cfg, Config)
    assert Config.from_dict(cfg.to_dict()) == cfg  # round-trips (what checkpoints store)


def test_paper_camvid_setting() -> None:
    cfg = load_config(REPO / "configs" / "reseg_camvid.yaml")
    assert cfg.data.crop_size == [360, 480] and cfg.data.batch_size == 5
    assert cfg.model.encoder_weights == "imagenet" and cfg.model.freeze_encoder
    assert cfg.model.renet_layers == 2 and cfg.model.renet_hidden == 100 and cfg.model.cell == "gru"
    assert cfg.optim.name == "adadelta"
    cs = load_config(REPO / "configs" / "reseg_cityscapes.yaml")
    assert cs.data.crop_size == [512, 1024] and cs.data.dataset == "cityscapes"


@pytest.mark.parametrize("name", ["reseg_camvid_cpu", "reseg_skip_camvid_cpu"])
def test_camvid_cpu_recipes_differ_only_in_the_model(name: str) -> None:
    """docs/results.md compares these runs like for like: same data, optimiser, schedule, seed and time budget."""
    reseg = load_config(REPO / "configs" / f"{name}.yaml").to_dict()
    unet = load_config(REPO / "configs" / "unet_vgg16_camvid_cpu.yaml").to_dict()
    for section in ("data", "optim", "sched", "loss", "eval", "train"):
        assert reseg[section] == unet[section], section
    assert reseg["train"]["time_budget"] == "60m" and reseg["train"]["max_iters"] is None
    assert reseg["model"]["encoder"] == unet["model"]["encoder"] == "vgg16_bn"
    assert reseg["model"]["encoder_weights"] is None and unet["model"]["encoder_weights"] is None


def test_base_merge_and_overrides(tmp_path: Path) -> None:
    write(tmp_path / "base" / "data.yaml", "data:\n  batch_size: 3\n  crop_size: [10, 20]\noptim:\n  lr: 0.5\n")
    write(tmp_path / "base" / "more.yaml", "optim:\n  lr: 0.25\n  name: sgd\n")
    exp = write(tmp_path / "exp.yaml", "_base_:\n  - base/data.yaml\n  - base/more.yaml\ndata:\n  batch_size: 7\n")
    cfg = load_config(exp)
    assert cfg.data.batch_size == 7  # the experiment wins over its bases
    assert cfg.data.crop_size == [10, 20]  # untouched base keys survive a partial section
    assert cfg.optim.lr == 0.25 and cfg.optim.name == "sgd"  # later bases win over earlier ones
    cfg = load_config(
        exp, ["optim.lr=0.01", "data.crop_size=[32, 48]", "train.deterministic=true", "model.encoder_weights=null"]
    )
    assert cfg.optim.lr == 0.01 and cfg.data.crop_size == [32, 48] and cfg.train.deterministic is True
    assert cfg.model.encoder_weights is None
    assert load_config(exp, ["optim.lr=1"]).optim.lr == 1.0  # int -> float


def test_unknown_key_names_key_file_and_closest(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", "optim:\n  learning_rate: 0.1\n")
    exp = write(tmp_path / "exp.yaml", "_base_: base.yaml\ndata:\n  batch_size: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(exp)
    msg = str(err.value)
    assert "optim.learning_rate" in msg and str(base.resolve()) in msg and "optim.lr" in msg

    exp2 = write(tmp_path / "exp2.yaml", "data:\n  batch_szie: 2\n")
    with pytest.raises(ConfigError, match=r"data\.batch_szie.*exp2\.yaml.*data\.batch_size"):
        load_config(exp2)
    with pytest.raises(ConfigError, match=r"train\.max_iter'.*--set.*train\.max_iters"):
        load_config(None, ["train.max_iter=5"])


def test_wrong_type_and_bad_values(tmp_path: Path) -> None:
    exp = write(tmp_path / "exp.yaml", "data:\n  batch_size: four\n")
    with pytest.raises(ConfigError, match=r"data\.batch_size.*exp\.yaml.*must be int.*four"):
        load_config(exp)
    with pytest.raises(ConfigError, match=r"optim\.name.*adamw"):
        load_config(None, ["optim.name=rmsprop"])
    with pytest.raises(ConfigError, match=r"key=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad_base = write(tmp_path / "bad_base.yaml", "_base_: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_config(bad_base)


def test_exponent_floats_without_a_dot(tmp_path: Path) -> None:
    """YAML 1.1 reads 1e-3 as text; float keys take it as the number users meant, in files and --set."""
    exp = write(tmp_path / "exp.yaml", "optim:\n  lr: 5e-4\n  betas: [0.9, 999e-3]\n")
    cfg = load_config(exp, ["optim.weight_decay=1E-5"])
    assert cfg.optim.lr == 5e-4 and cfg.optim.betas == [0.9, 0.999] and cfg.optim.weight_decay == 1e-5
    with pytest.raises(ConfigError, match=r"optim\.lr.*must be float.*1e-3x"):
        load_config(None, ["optim.lr=1e-3x"])
    with pytest.raises(ConfigError, match=r"data\.batch_size.*must be int"):
        load_config(None, ["data.batch_size=4e0"])  # ints stay strict


def test_train_cli_applies_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`reseg train` maps --device/--amp/--set into the config and defaults the work dir to work_dirs/<stem>."""
    import reseg.engine.trainer as trainer
    from reseg.cli import main

    seen = {}

    def fake_train(cfg, work_dir, resume=None, progress=None, overwrite=False):
        seen.update(cfg=cfg, work_dir=work_dir, resume=resume, overwrite=overwrite)
        return {"status": "finished", "iteration": 0, "best_mIoU": None, "best_iteration": None}

    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    exp = write(tmp_path / "my_exp.yaml", "train:\n  seed: 3\n")
    assert (
        main(["train", str(exp), "--device", "cpu", "--amp", "--set", "optim.lr=0.5", "data.batch_size=2", "--resume"])
        == 0
    )
    cfg = seen["cfg"]
    assert cfg.train.device == "cpu" and cfg.train.amp and cfg.optim.lr == 0.5 and cfg.data.batch_size == 2
    assert Path(seen["work_dir"]) == Path("work_dirs/my_exp")
    assert Path(seen["resume"]) == Path("work_dirs/my_exp/last.pt")
    assert main(["train", str(exp), "--set", "optim.lrr=1"]) == 2  # a config error is a clean exit 2


# ---------------------------------------------------------------- every key's range, named errors

BAD_VALUES = [
    ("data.scale_range=[1.5]", "data.scale_range", "[min, max]"),
    ("data.scale_range=[2.0,0.5]", "data.scale_range", "min <= max"),
    ("data.scale_range=[0,1]", "data.scale_range", "> 0"),
    ("data.eval_size=[512]", "data.eval_size", "[height, width]"),
    ("data.eval_size=[0,512]", "data.eval_size", "integer >= 1"),
    ("data.eval_size=[1.5,2]", "data.eval_size", "list of int"),
    ("data.crop_size=[360,480,3]", "data.crop_size", "[height, width]"),
    ("data.val_batch_size=0", "data.val_batch_size", ">= 1"),
    ("data.batch_size=-2", "data.batch_size", ">= 1"),
    ("data.num_workers=-1", "data.num_workers", ">= 0"),
    ("data.size_divisor=abc", "data.size_divisor", "must be int"),
    ("data.size_divisor=0", "data.size_divisor", ">= 1"),
    ("data.color_jitter=1.5", "data.color_jitter", "[0, 1]"),
    ("data.synthetic_sizes=[10,2]", "data.synthetic_sizes", "[train, val, test]"),
    ("data.label_format=rgb", "data.label_format", "one of auto"),
    ("data.augment=heavy", "data.augment", "one of standard, photometric, strong"),
    ("model.decoder_dropout=1.0", "model.decoder_dropout", "[0, 1)"),
    ("loss.label_smoothing=-0.1", "loss.label_smoothing", "[0, 1)"),
    ("train.ema_decay=1", "train.ema_decay", "[0, 1)"),
    ("data.root=''", "data.root", "non-empty"),
    ("model.num_classes=0", "model.num_classes", ">= 1"),
    ("model.renet_hidden=[100,0]", "model.renet_hidden", ">= 1"),
    ("model.renet_layers=-1", "model.renet_layers", ">= 0"),
    ("model.decoder_filters=[]", "model.decoder_filters", "non-empty"),
    ("optim.lr=0", "optim.lr", "> 0"),
    ("optim.lr=-0.1", "optim.lr", "> 0"),
    ("optim.momentum=1.0", "optim.momentum", "[0, 1)"),
    ("optim.betas=[0.9]", "optim.betas", "[beta1, beta2]"),
    ("optim.grad_clip=0", "optim.grad_clip", "null or"),
    ("sched.warmup_iters=-5", "sched.warmup_iters", ">= 0"),
    ("sched.warmup_ratio=2", "sched.warmup_ratio", "[0, 1]"),
    ("sched.step_size=0", "sched.step_size", ">= 1"),
    ("loss.dice_weight=-1", "loss.dice_weight", ">= 0"),
    ("loss.ignore_index=0", "loss.ignore_index", "255"),
    ("train.max_iters=-10", "train.max_iters", ">= 1"),
    ("train.epochs=0", "train.epochs", ">= 1"),
    ("train.val_interval=-1", "train.val_interval", ">= 0"),
    ("train.log_interval=-1", "train.log_interval", ">= 0"),
    ("train.seed=-1", "train.seed", ">= 0"),
    ("train.device=gpu", "train.device", "cuda:N"),
    ("train.early_stop_patience=0", "train.early_stop_patience", ">= 1"),
    ("eval.scales=abc", "eval.scales", "list of float"),
    ("eval.scales=[]", "eval.scales", "non-empty"),
    ("eval.scales=[1.0,-0.5]", "eval.scales", "> 0"),
    ("eval.crop=[512]", "eval.crop", "[height, width]"),
    ("eval.stride=[0,10]", "eval.stride", "integer >= 1"),
]


@pytest.mark.parametrize("override,key,allowed", BAD_VALUES)
def test_bad_values_name_key_value_and_what_is_allowed(override: str, key: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    msg = str(err.value)
    value = override.split("=", 1)[1]
    assert key in msg and allowed in msg and "--set" in msg
    if value not in ("''", "abc"):
        assert value.strip("[]").split(",")[0].rstrip("0").rstrip(".") in msg.replace(" ", "")


def test_good_edge_values_pass() -> None:
    cfg = load_config(
        None,
        [
            "data.scale_range=[1,1]",
            "data.num_workers=0",
            "train.val_interval=0",
            "data.eval_size=[8,16]",
            "eval.scales=[0.5,1,1.5]",
            "train.device=cuda:1",
            "model.renet_hidden=[10,20]",
            "optim.grad_clip=1",
        ],
    )
    assert cfg.data.scale_range == [1.0, 1.0] and cfg.eval.scales == [0.5, 1.0, 1.5]


def test_every_config_key_has_a_range_rule() -> None:
    import dataclasses

    from reseg.config import RULES

    keys = {
        f"{s.name}.{f.name}" for s in dataclasses.fields(Config) for f in dataclasses.fields(getattr(Config(), s.name))
    }
    assert keys - set(RULES) == set(), "config keys without a range rule in reseg.config.RULES"
    assert set(RULES) - keys == set(), "rules for keys that do not exist"


def test_validate_names_the_source_file(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("optim:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=f"optim.lr' \\(from {cfg}\\) is -1.0; expected a number > 0"):
        load_config(cfg)


def test_not_utf8_empty_and_missing_base(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("data:\n  root: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml is not UTF-8 .*0xe9"):
        load_config(latin)
    for text in ("", "# only a comment\n", "\n\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        with pytest.raises(ConfigError, match="empty.yaml is empty"):
            load_config(empty)
    child = tmp_path / "child.yaml"
    child.write_text("_base_: [nowhere/base.yaml]\ntrain:\n  max_iters: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(child)
    assert "nowhere/base.yaml" in str(err.value) and str(child) in str(err.value)
    child.write_text("_base_: {a: 1}\n")
    with pytest.raises(ConfigError, match="_base_ in .*child.yaml must be a file name"):
        load_config(child)


def test_override_syntax_errors() -> None:
    from reseg.config import parse_overrides

    assert parse_overrides(["a.b=1", "c=[1, 2]", "d=x=y"]) == [("a.b", 1), ("c", [1, 2]), ("d", "x=y")]
    for bad in ("optim.lr", "=3", "optim..lr=1", ".lr=1"):
        with pytest.raises(ConfigError, match="must look like key=value"):
            parse_overrides([bad])


def test_dump_config_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    import os

    from reseg.config import dump_config

    cfg = load_config(None, ["optim.lr=0.02", "data.crop_size=[32,48]"])
    old = os.umask(0o022)
    try:
        dump_config(cfg, tmp_path / "config.yaml")
    finally:
        os.umask(old)
    assert load_config(tmp_path / "config.yaml") == cfg
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
    assert (tmp_path / "config.yaml").stat().st_mode & 0o777 == 0o644


REGULARISERS = {"data.augment", "train.ema_decay", "loss.label_smoothing", "model.decoder_dropout"}
LEVER_KEYS = {  # _all: the regularisers
    *REGULARISERS,
    "train.init_from",
    "model.encoder_width",
    "data.class_mix",
    "optim.weight_decay",
    "optim.lr",
    "loss.lovasz_weight",
    "data.class_weights",
    "model.ibn_blocks",
    "data.scale_range",
    "data.crop_size",
    "data.eval_size",
    "data.synthetic_mix",
    "data.synthetic_mix_root",
    "data.synthetic_sizes",
}
LEVERS = sorted(p.name for p in (REPO / "configs" / "levers").glob("*.yaml"))


def _flat(cfg: Config) -> dict[str, object]:
    return {f"{section}.{key}": value for section, values in cfg.to_dict().items() for key, value in values.items()}


@pytest.mark.parametrize("name", LEVERS)
def test_lever_configs_differ_from_their_recipe_only_in_levers(name: str) -> None:
    """The screening compares each lever config with the recipe it builds on: nothing else may differ."""
    import yaml

    path = REPO / "configs" / "levers" / name
    recipe = yaml.safe_load(path.read_text())["_base_"][0]
    assert recipe.startswith("../") and "unseen" in recipe
    lever, base = _flat(load_config(path)), _flat(load_config(path.parent / recipe))
    changed = {k for k in lever if lever[k] != base[k]}
    assert changed and changed <= LEVER_KEYS, changed
    assert (changed == REGULARISERS) == name.endswith("_all.yaml")
    assert lever["data.val_sequences"] == ["0006R0"]


def _screen(out: Path, budget: str, **env: str) -> str:
    """tools/screen_levers.sh on /data/camvid into `out` with these environment variables; its stdout."""
    import os
    import subprocess
    import sys

    return subprocess.run(
        ["bash", str(REPO / "tools" / "screen_levers.sh"), "/data/camvid", str(out), budget],
        env={**os.environ, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def _finished_run(run: Path, config: Path | str, miou: float, overrides: list[str] | None = None) -> None:
    """What a finished screening run leaves behind: its config, validations and best.pt's scores."""
    import json

    import yaml

    (run / "eval_best").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(load_config(config, overrides).to_dict()))
    (run / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"type": "val", "iter": it, "mIoU": m}) for it, m in ((100, miou), (180, miou - 0.1)))
    )
    (run / "eval_best" / "metrics.json").write_text(json.dumps({"mIoU": miou, "aAcc": 0.8}))


def _stage1(lever: str) -> str:
    """The stage-1 config a synthetic lever starts from: the run its train.init_from names."""
    cfg = load_config(REPO / "configs" / "levers" / lever)
    return Path(cfg.train.init_from).parent.name + ".yaml"


def test_synthetic_levers_start_from_a_stage_1_of_their_own_model(tmp_path: Path) -> None:
    """A lever and its stage 1 build the same architecture, or the fine-tuning could not load the weights."""
    from reseg.config import architecture_keys

    for lever in (name for name in LEVERS if name.endswith("_synthinit.yaml")):
        tuned = load_config(REPO / "configs" / "levers" / lever).model
        first = load_config(REPO / "configs" / _stage1(lever)).model
        assert {k: getattr(tuned, k) for k in architecture_keys()} == {
            k: getattr(first, k) for k in architecture_keys()
        }


def test_screen_levers_refuses_a_synthetic_lever_without_its_stage_1(tmp_path: Path) -> None:
    import shutil
    import subprocess

    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "tools").mkdir()
    shutil.copy(REPO / "tools" / "screen_levers.sh", tmp_path / "tools")
    lever = tmp_path / "configs" / "levers" / "reseg_skip_unseen_closer_classmix_synthinit.yaml"
    lever.write_text(lever.read_text().replace("reseg_skip_synthetic_pretrain/best.pt", "nowhere/best.pt"))
    done = subprocess.run(
        ["bash", str(tmp_path / "tools" / "screen_levers.sh"), "/data/camvid", str(tmp_path / "out"), "20m"],
        env={"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "ONLY": "reseg_skip_unseen_closer_classmix_synthinit"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{lever}: a synthetic lever names its stage 1 as train.init_from" in done.stderr


def test_screen_levers_script_runs_every_lever_and_tabulates(tmp_path: Path) -> None:
    """tools/screen_levers.sh, without training: DRY_RUN lists a train + evaluate pair per config (every lever
    config and both recipes, at the budget asked), TABLE_ONLY builds the table from the runs' files."""
    out = tmp_path / "levers"
    dry = _screen(out, "15m", DRY_RUN="1").splitlines()
    trains = [line for line in dry if " -m reseg train " in line]
    expected = {"reseg_skip_camvid_cpu_unseen.yaml", "unet_vgg16_camvid_cpu_unseen.yaml", *LEVERS}
    # each synthetic lever's first stage is its model's own (not a screened run), shared by that model's levers
    synthinit = [name for name in LEVERS if name.endswith("_synthinit.yaml")]
    stage1 = {name: _stage1(name) for name in synthinit}
    assert set(stage1.values()) == {
        "reseg_skip_synthetic_pretrain.yaml",
        "unet_vgg16_synthetic_pretrain.yaml",
        "reseg_skip_fullwidth_synthetic_pretrain.yaml",
        "reseg_skip_closer_synthetic_pretrain.yaml",
    }
    assert sorted(Path(line.split()[5]).name for line in trains) == sorted([*expected, *stage1.values()])
    staged = {Path(line.split()[5]).name: line for line in trains if "synth" in line.split()[5]}
    assert all(
        "--set data.root=/data/camvid train.time_budget=15m" in line for line in trains if line not in staged.values()
    )
    # the two stages share the 15 minutes: a quarter pretraining, the rest fine-tuning from the first's best.pt
    for first in set(stage1.values()):
        assert staged[first].endswith("--set train.time_budget=225s")
    assert staged["reseg_skip_unseen_synthinit.yaml"].endswith(
        f"--set data.root=/data/camvid train.time_budget=675s train.init_from={out}/reseg_skip_synthetic_pretrain/best.pt"
    )
    for name, first in stage1.items():
        assert Path(trains[trains.index(staged[name]) - 1].split()[5]).name == first
        assert staged[name].endswith(f"train.init_from={out}/{Path(first).stem}/best.pt")
    assert sum(" -m reseg evaluate --checkpoint " in line for line in dry) == len(expected)
    trained = [line.split()[5] for line in trains if Path(line.split()[5]).name not in stage1.values()]

    for i, config in enumerate(trained):
        _finished_run(out / Path(config).stem, config, 0.3 + i / 1000)
    table = _screen(out, "15m", TABLE_ONLY="1")
    assert (out / "levers.md").read_text().strip() == table.strip()
    rows = [line for line in table.splitlines() if line.startswith("| reseg") or line.startswith("| unet")]
    assert len(rows) == len(expected)
    assert (
        "| reseg_skip_unseen_all | reseg | augment strong, ema 0.99, smoothing 0.1, dropout 0.1 | unseen drive 0006R0 "
        "| 180 | 100 |" in table
    )
    assert "| reseg_skip_camvid_cpu_unseen | reseg | - | unseen drive 0006R0 | 180 | 100 | 30.00 | 80.00 |" in table
    assert "| reseg_skip_unseen_synthinit | reseg | from reseg_skip_synthetic_pretrain | unseen drive 0006R0 |" in table
    assert "| reseg_skip_unseen_wd | reseg | weight decay 0.05 | unseen drive 0006R0 |" in table
    assert (
        "| reseg_skip_unseen_closer_classmix_lowlr_synthinit | reseg | classmix 0.5, lr 0.001, from "
        "reseg_skip_synthetic_pretrain, scale 0.7-0.9, eval 288x384 | unseen drive 0006R0 |" in table
    )
    assert "| reseg_skip_unseen_lovasz | reseg | lovasz 0.5 | unseen drive 0006R0 |" in table
    assert "| reseg_skip_unseen_medfreq | reseg | median_frequency weights | unseen drive 0006R0 |" in table
    assert "| reseg_skip_unseen_ibn | reseg | ibn 2 blocks | unseen drive 0006R0 |" in table
    assert "| unet_vgg16_unseen_ibn | unet_vgg16 | ibn 2 blocks | unseen drive 0006R0 |" in table
    assert "| unet_vgg16_unseen_closer | unet_vgg16 | scale 0.7-0.9, eval 288x384 | unseen drive 0006R0 |" in table
    assert (
        "| reseg_skip_unseen_closer_classmix | reseg | classmix 0.5, scale 0.7-0.9, eval 288x384 | unseen drive 0006R0 |"
        in table
    )
    assert (
        "| unet_vgg16_unseen_native_classmix | unet_vgg16 | classmix 0.5, scale 0.9-1.1, eval 360x480 | unseen drive 0006R0 |"
        in table
    )
    assert (
        "| reseg_skip_unseen_wholeframe_classmix | reseg | classmix 0.5, scale 0.7-0.9, crop 288x384, eval 288x384 "
        "| unseen drive 0006R0 |" in table
    )
    assert (
        "| reseg_skip_unseen_closer_classmix_synthinit | reseg | classmix 0.5, from reseg_skip_synthetic_pretrain, "
        "scale 0.7-0.9, eval 288x384 | unseen drive 0006R0 |" in table
    )
    assert (
        "| unet_vgg16_unseen_closer_classmix_synthmix_synthinit | unet_vgg16 | classmix 0.5, from "
        "unet_vgg16_synthetic_pretrain, 0.2 generated, scale 0.7-0.9, eval 288x384 | unseen drive 0006R0 |" in table
    )


def test_screen_levers_seeds_and_validations_give_mean_spread_and_both_drives(tmp_path: Path) -> None:
    """SEEDS="0 1" VALIDATION="unseen same-drive": one run per seed and validation in its own work dir (train.seed
    set; data.val_sequences=null for the same drive), then each config's mean and spread over its seeds and
    the two validations side by side."""
    env = {"SEEDS": "0 1", "VALIDATION": "unseen same-drive", "ONLY": "reseg_skip_unseen_all"}
    out = tmp_path / "final"
    dry = _screen(out, "60m", DRY_RUN="1", **env).splitlines()
    trains = [line.split() for line in dry if " -m reseg train " in line]
    names = ["reseg_skip_unseen_all_seed0", "reseg_skip_unseen_all_seed1"]
    names += ["reseg_skip_unseen_all_samedrive_seed0", "reseg_skip_unseen_all_samedrive_seed1"]
    assert [line[7] for line in trains] == [str(out / name) for name in names]
    assert [line[line.index("--set") + 3 :] for line in trains] == [
        ["train.seed=0"],
        ["train.seed=1"],
        ["train.seed=0", "data.val_sequences=null"],
        ["train.seed=1", "data.val_sequences=null"],
    ]

    config = REPO / "configs" / "levers" / "reseg_skip_unseen_all.yaml"
    for name, miou in zip(names, (0.40, 0.44, 0.60, 0.62)):
        _finished_run(out / name, config, miou, ["data.val_sequences=null"] if "samedrive" in name else [])
    table = _screen(out, "60m", TABLE_ONLY="1", **env)
    assert "| reseg_skip_unseen_all_samedrive_seed1 | reseg | " in table
    assert "| same drive (CamVid val) | 180 | 100 | 62.00 | 80.00 |" in table
    assert "| reseg_skip_unseen_all | unseen drive 0006R0 | 2 | 42.00 | 40.00 to 44.00 | 2.83 |" in table
    assert "| reseg_skip_unseen_all | same drive (CamVid val) | 2 | 61.00 | 60.00 to 62.00 | 1.41 |" in table
    assert "| reseg_skip_unseen_all | 0006R0 | 61.00 | 42.00 | 19.00 |" in table


def test_screen_levers_leaves_a_named_drive_out(tmp_path: Path) -> None:
    """VALIDATION="unseen drive-0016E5": a second run validated on drive 0016E5 (trained on the other drives), in
    its own work dir, with its own row in the means and beside nothing it was not validated on; a drive the
    script cannot name is refused."""
    env = {"SEEDS": "0", "VALIDATION": "unseen drive-0016E5 same-drive", "ONLY": "reseg_skip_unseen_all"}
    out = tmp_path / "lodo"
    dry = _screen(out, "30m", DRY_RUN="1", **env).splitlines()
    trains = [line.split() for line in dry if " -m reseg train " in line]
    names = ["reseg_skip_unseen_all_seed0", "reseg_skip_unseen_all_drive0016E5_seed0"]
    names.append("reseg_skip_unseen_all_samedrive_seed0")
    assert [line[7] for line in trains] == [str(out / name) for name in names]
    assert trains[1][trains[1].index("--set") + 3 :] == ["train.seed=0", "data.val_sequences=[0016E5]"]

    config = REPO / "configs" / "levers" / "reseg_skip_unseen_all.yaml"
    overrides = ([], ["data.val_sequences=[0016E5]"], ["data.val_sequences=null"])
    for name, miou, extra in zip(names, (0.40, 0.30, 0.60), overrides):
        _finished_run(out / name, config, miou, extra)
    table = _screen(out, "30m", TABLE_ONLY="1", **env)
    assert "| reseg_skip_unseen_all_drive0016E5_seed0 | reseg | " in table
    assert "| unseen drive 0016E5 | 180 | 100 | 30.00 | 80.00 |" in table
    assert "| reseg_skip_unseen_all | 0006R0 | 60.00 | 40.00 | 20.00 |" in table
    assert "| reseg_skip_unseen_all | 0016E5 | 60.00 | 30.00 | 30.00 |" in table
    # leave one drive out: each drive's own figure, then their mean
    assert "| reseg_skip_unseen_all | 2 | 35.00 | 0006R0 40.00, 0016E5 30.00 |" in table

    # a run still training (no scores yet) is named, not fatal, and stays out of every mean
    (out / "reseg_skip_unseen_all_seed1").mkdir()
    table = _screen(out, "30m", TABLE_ONLY="1", **{**env, "SEEDS": "0 1"})
    assert "Not finished yet (no eval_best/metrics.json): reseg_skip_unseen_all_seed1" in table
    assert "| reseg_skip_unseen_all | 2 | 35.00 | 0006R0 40.00, 0016E5 30.00 |" in table

    import subprocess

    with pytest.raises(subprocess.CalledProcessError) as refused:
        _screen(out, "30m", DRY_RUN="1", VALIDATION="drive-")
    assert "drive-SEQUENCE" in refused.value.stderr


def test_screen_levers_pretrain_share_splits_the_budget_into_its_own_work_dirs(tmp_path: Path) -> None:
    """PRETRAIN_SHARE=40: the synthetic stage gets 40% of the budget and the fine-tuning the rest, both in work
    dirs ending in _pre40 (never the quarter's, which a resumable screening would otherwise pick up), and the
    table groups the seeds under the lever's own name; a share outside 1-99 is refused."""
    env = {"SEEDS": "0 1", "ONLY": "reseg_skip_unseen_synthinit", "PRETRAIN_SHARE": "40"}
    out = tmp_path / "share"
    trains = [
        line.split() for line in _screen(out, "60m", DRY_RUN="1", **env).splitlines() if " -m reseg train " in line
    ]
    assert [Path(line[7]).name for line in trains] == [
        "reseg_skip_synthetic_pretrain_pre40_seed0",
        "reseg_skip_unseen_synthinit_pre40_seed0",
        "reseg_skip_synthetic_pretrain_pre40_seed1",
        "reseg_skip_unseen_synthinit_pre40_seed1",
    ]
    assert "train.time_budget=1440s" in trains[0] and "train.time_budget=2160s" in trains[1]
    assert f"train.init_from={out}/reseg_skip_synthetic_pretrain_pre40_seed1/best.pt" in trains[3]

    config = REPO / "configs" / "levers" / "reseg_skip_unseen_synthinit.yaml"
    for seed, miou in ((0, 0.46), (1, 0.48)):
        _finished_run(out / f"reseg_skip_unseen_synthinit_pre40_seed{seed}", config, miou)
    table = _screen(out, "60m", TABLE_ONLY="1", **env)
    assert "| reseg_skip_unseen_synthinit | unseen drive 0006R0 | 2 | 47.00 | 46.00 to 48.00 | 1.41 |" in table

    import subprocess

    for share in ("0", "100", "half"):
        with pytest.raises(subprocess.CalledProcessError) as refused:
            _screen(out, "60m", DRY_RUN="1", PRETRAIN_SHARE=share)
        assert f"PRETRAIN_SHARE: a whole percentage from 1 to 99, got {share}" in refused.value.stderr
