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


def test_camvid_cpu_recipes_differ_only_in_model_and_length() -> None:
    """The README compares these two runs like for like: same data, optimiser, schedule and seed."""
    reseg = load_config(REPO / "configs" / "reseg_camvid_cpu.yaml").to_dict()
    unet = load_config(REPO / "configs" / "unet_vgg16_camvid_cpu.yaml").to_dict()
    for section in ("data", "optim", "sched", "loss", "eval"):
        assert reseg[section] == unet[section], section
    assert {k for k in reseg["train"] if reseg["train"][k] != unet["train"][k]} <= {"max_iters"}
    assert reseg["model"]["encoder"] == unet["model"]["encoder"] == "vgg16_bn"
    assert reseg["model"]["encoder_weights"] is None and unet["model"]["encoder_weights"] is None


def test_base_merge_and_overrides(tmp_path: Path) -> None:
    write(tmp_path / "base" / "data.yaml", "data:\n  batch_size: 3\n  crop_size: [10, 20]\noptim:\n  lr: 0.5\n")
    write(tmp_path / "base" / "more.yaml", "optim:\n  lr: 0.25\n  name: sgd\n")
    exp = write(tmp_path / "exp.yaml", "_base_:\n  - base/data.yaml\n  - base/more.yaml\ndata:\n  batch_size: 7\n")
    cfg = load_config(exp)
    assert cfg.data.batch_size == 7          # the experiment wins over its bases
    assert cfg.data.crop_size == [10, 20]    # untouched base keys survive a partial section
    assert cfg.optim.lr == 0.25 and cfg.optim.name == "sgd"  # later bases win over earlier ones
    cfg = load_config(exp, ["optim.lr=0.01", "data.crop_size=[32, 48]", "train.deterministic=true",
                            "model.encoder_weights=null"])
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

    def fake_train(cfg, work_dir, resume=None, progress=None):
        seen.update(cfg=cfg, work_dir=work_dir, resume=resume)
        return {"status": "finished", "iteration": 0, "best_mIoU": None, "best_iteration": None}

    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    exp = write(tmp_path / "my_exp.yaml", "train:\n  seed: 3\n")
    assert main(["train", str(exp), "--device", "cpu", "--amp", "--set", "optim.lr=0.5", "data.batch_size=2",
                 "--resume"]) == 0
    cfg = seen["cfg"]
    assert cfg.train.device == "cpu" and cfg.train.amp and cfg.optim.lr == 0.5 and cfg.data.batch_size == 2
    assert Path(seen["work_dir"]) == Path("work_dirs/my_exp")
    assert Path(seen["resume"]) == Path("work_dirs/my_exp/last.pt")
    assert main(["train", str(exp), "--set", "optim.lrr=1"]) == 2  # a config error is a clean exit 2
