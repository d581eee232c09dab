"""Model folders (`reseg package`): the four files, loading anywhere a checkpoint loads, named errors for broken
folders, atomic and non-destructive writing, the model card, and the Hub (stood in for: never the network)."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from reseg.cli import main
from reseg.engine.checkpoint import save_checkpoint
from reseg.errors import ResegError
from reseg.model_folder import ModelFolderError
from reseg.packaging import package
from reseg.predictor import Predictor

NAMES = ["sky", "road", "car"]
PALETTE = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]


def _tiny_state(names=NAMES, data=None, seed=0) -> dict:
    from reseg.config import Config
    from reseg.models import build_model

    cfg = Config.from_dict(
        {
            "data": {"num_workers": 0, "size_divisor": 16, **(data or {})},
            "model": {
                "name": "reseg",
                "renet_layers": 1,
                "renet_hidden": 4,
                "decoder_filters": [4, 4],
                "num_classes": len(names),
            },
        }
    )
    torch.manual_seed(seed)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # a head that varies across pixels, so masks are not one class
        for name, p in model.named_parameters():
            if not name.startswith("encoder"):
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 if p.dim() > 1 else 0.1))
    return {
        "config": cfg.to_dict(),
        "model": model.state_dict(),
        "class_names": list(names),
        "epoch": 1,
        "iteration": 7,
        "total_iters": 10,
        "best_metric": 0.4321,
        "best_iteration": 6,
    }


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("run") / "best.pt"
    save_checkpoint({**_tiny_state(), "palette": PALETTE}, path)
    return path


@pytest.fixture(scope="module")
def folder(ckpt, tmp_path_factory) -> Path:
    return package(ckpt, tmp_path_factory.mktemp("pkg") / "model")


def _image(h=48, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_folder_holds_the_weights_config_and_classes_of_the_checkpoint(ckpt, folder):
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "classes.json", "config.yaml", "model.safetensors"]
    state = torch.load(ckpt, weights_only=True)
    weights = load_file(folder / "model.safetensors")
    assert weights.keys() == state["model"].keys()
    for k, v in state["model"].items():
        assert torch.equal(weights[k], v), k
    classes = json.loads((folder / "classes.json").read_text())
    assert classes == {"names": NAMES, "palette": PALETTE, "ignore_index": 255}
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert set(config) == {"data", "model", "eval"}
    assert config["model"]["renet_hidden"] == 4 and config["model"]["num_classes"] == 3
    assert config["model"]["encoder_weights"] is None and config["data"]["size_divisor"] == 16
    assert not list(folder.parent.glob(".*partial*"))  # no temporary folder left beside it


def test_folder_predicts_exactly_as_the_checkpoint(ckpt, folder):
    x = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    from_ckpt = Predictor.from_checkpoint(ckpt, device="cpu")
    from_folder = Predictor.from_checkpoint(folder, device="cpu")
    assert from_folder.class_names == NAMES and from_folder.palette == [tuple(c) for c in PALETTE]
    assert from_folder.size_divisor == 16
    torch.testing.assert_close(from_folder.logits(x), from_ckpt.logits(x), rtol=0, atol=0)


def test_predict_and_export_commands_take_a_folder(folder, tmp_path, capsys):
    import cv2

    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), _image())
    assert (
        main(["predict", "--checkpoint", str(folder), str(image), "--out", str(tmp_path / "p"), "--device", "cpu"]) == 0
    )
    mask = cv2.imread(str(tmp_path / "p" / "a.png"), cv2.IMREAD_UNCHANGED)
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(mask, Predictor.from_checkpoint(folder, device="cpu").predict([rgb])[0])
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(folder),
                "--format",
                "torchscript",
                "--out",
                str(tmp_path / "m.pt"),
                "--size",
                "32",
                "48",
            ]
        )
        == 0
    )
    assert (tmp_path / "m.pt").is_file()


def test_init_from_takes_a_folder(folder):
    from reseg.engine.checkpoint import init_weights
    from reseg.models import build_model

    cfg = Predictor.from_checkpoint(folder, device="cpu").config
    model = build_model(cfg)
    init_weights(model, folder)
    expected = load_file(folder / "model.safetensors")
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("missing", ["model.safetensors", "config.yaml", "classes.json"])
def test_incomplete_folder_names_the_missing_file(folder, tmp_path, missing):
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / missing).unlink()
    with pytest.raises(ModelFolderError, match=rf"incomplete: it lacks {missing}"):
        Predictor.from_checkpoint(broken, device="cpu")


def test_a_work_dir_is_not_taken_for_a_model_folder(ckpt):
    with pytest.raises(ModelFolderError, match=r"lacks model\.safetensors.*holds best\.pt"):
        Predictor.from_checkpoint(ckpt.parent, device="cpu")


def test_weights_that_do_not_fit_the_config_name_the_tensor(folder, tmp_path):
    wider = tmp_path / "wider"
    shutil.copytree(folder, wider)
    config = yaml.safe_load((wider / "config.yaml").read_text())
    config["model"]["renet_hidden"] = 5
    (wider / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(
        ModelFolderError,
        match=r"model\.safetensors does not fit config\.yaml.*tensor '.*' is "
        r"\(.*\) in the weights, \(.*\) in the model",
    ):
        Predictor.from_checkpoint(wider, device="cpu")

    fewer = tmp_path / "fewer"
    shutil.copytree(folder, fewer)
    weights = load_file(fewer / "model.safetensors")
    gone = sorted(weights)[-1]
    del weights[gone]
    save_file(weights, str(fewer / "model.safetensors"))
    with pytest.raises(ModelFolderError, match=rf"tensor '{gone}' is missing"):
        Predictor.from_checkpoint(fewer, device="cpu")


def test_damaged_files_are_named(folder, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(folder, cut)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFolderError, match=r"model\.safetensors is truncated, damaged"):
        Predictor.from_checkpoint(cut, device="cpu")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "classes.json").write_text(json.dumps({"names": NAMES, "palette": PALETTE[:2]}))
    with pytest.raises(ModelFolderError, match=r"classes\.json: 'palette' must hold one \[r, g, b\]"):
        Predictor.from_checkpoint(bad, device="cpu")


def test_package_never_overwrites_without_being_asked(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["package", "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    assert main(["package", "--checkpoint", str(ckpt), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "notes.txt").exists() and (out / "model.safetensors").is_file()
    with pytest.raises(ResegError, match="holds the checkpoint"):
        package(ckpt, ckpt.parent, overwrite=True)
    assert ckpt.is_file()


def test_a_failed_package_leaves_the_old_folder_and_no_debris(ckpt, folder, tmp_path, monkeypatch):
    out = tmp_path / "model"
    shutil.copytree(folder, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_card(*args, **kwargs):
        raise OSError("disk trouble")

    monkeypatch.setattr("reseg.model_card.model_card", broken_card)
    with pytest.raises(OSError, match="disk trouble"):
        package(ckpt, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_model_card_reports_training_and_the_evaluation(ckpt, tmp_path):
    from reseg.report import percent

    per_class = {
        "sky": {"IoU": 0.5, "Acc": 0.75},
        "road": {"IoU": 0.25, "Acc": None},
        "car": {"IoU": 0.125, "Acc": 0.5},
    }
    metrics = {
        "mIoU": 0.2917,
        "mAcc": 0.625,
        "aAcc": 0.7,
        "fwIoU": 0.4,
        "per_class": per_class,
        "class_names": NAMES,
        "dataset": "synthetic",
        "split": "val",
        "inference": "device=cpu backend=eager",
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    out = package(ckpt, tmp_path / "model", metrics=tmp_path / "metrics.json")
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: reseg\n")
    for name, s in per_class.items():
        assert f"| {name} | {percent(s['IoU'])} | {percent(s['Acc'])} |" in card
    assert f"| mIoU | {percent(metrics['mIoU'])} |" in card and "on dataset synthetic, split val" in card
    assert "iteration 7 of 10" in card and "43.21%" in card  # the checkpoint's own training record
    assert "evaluated with device=cpu backend=eager" in card and "## Limitations" in card
    assert "not recorded in the checkpoint" in card
    wrong = {**metrics, "class_names": ["a", "b", "c"], "per_class": {"a": {}, "b": {}, "c": {}}}
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(ResegError, match="scores the classes"):
        package(ckpt, tmp_path / "other", metrics=tmp_path / "wrong.json")
    assert not (tmp_path / "other").exists()


def test_evaluate_scores_a_folder_as_its_checkpoint(tmp_path):
    import reseg
    from reseg.data.classes import CAMVID
    from reseg.data.synthetic import make_synthetic

    data = make_synthetic(tmp_path / "synthetic", train=2, val=2, test=0, size=(48, 64))
    ckpt = tmp_path / "run" / "best.pt"
    ckpt.parent.mkdir()
    save_checkpoint(
        _tiny_state(list(CAMVID.names), {"dataset": "synthetic", "root": str(data), "synthetic_sizes": [2, 2, 0]}), ckpt
    )
    folder = package(ckpt, tmp_path / "pkg" / "model")
    assert (
        main(
            ["evaluate", "--checkpoint", str(ckpt), "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "e1")]
        )
        == 0
    )
    m = reseg.evaluate(folder, device="cpu", workers=0)
    assert (tmp_path / "pkg" / "eval_val" / "metrics.json").is_file()  # default: beside the folder, not inside
    first = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    assert m["confusion_matrix"] == first["confusion_matrix"] and m["num_images"] == 2


# ------------------------------------------------------------------ the Hub, stood in for


@pytest.fixture
def fake_hub(monkeypatch, folder, tmp_path):
    """A huggingface_hub whose download returns a copy of the packaged folder and whose upload records."""
    calls: dict[str, list] = {"download": [], "create": [], "upload": []}
    snapshot = tmp_path / "hub-cache" / "snapshot"
    shutil.copytree(folder, snapshot)

    def snapshot_download(**kwargs):
        calls["download"].append(kwargs)
        return str(snapshot)

    class HfApi:
        def create_repo(self, repo_id, **kwargs):
            calls["create"].append((repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls["upload"].append({**kwargs, "files": sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())})
            return types.SimpleNamespace(commit_url=f"https://hub.example/{kwargs['repo_id']}/commit/1")

    module = types.ModuleType("huggingface_hub")
    module.snapshot_download = snapshot_download
    module.HfApi = HfApi
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)
    return calls


def test_load_from_the_hub_downloads_the_folder(fake_hub, folder):
    import reseg

    image = _image(seed=3)
    model = reseg.load("hf://someone/tiny-reseg@v1", device="cpu")
    assert np.array_equal(model(image), reseg.load(folder, device="cpu")(image))
    (call,) = fake_hub["download"]
    assert call["repo_id"] == "someone/tiny-reseg" and call["revision"] == "v1"
    assert set(call["allow_patterns"]) == {"model.safetensors", "config.yaml", "classes.json", "README.md"}


def test_package_push_uploads_the_finished_folder(fake_hub, ckpt, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["package", "--checkpoint", str(ckpt), "--out", str(out), "--push", "someone/tiny-reseg"]) == 0
    (upload,) = fake_hub["upload"]
    assert upload["repo_id"] == "someone/tiny-reseg" and Path(upload["folder_path"]) == out
    assert upload["files"] == ["README.md", "classes.json", "config.yaml", "model.safetensors"]
    assert fake_hub["create"][0][0] == "someone/tiny-reseg" and fake_hub["create"][0][1]["exist_ok"]
    assert "hf://someone/tiny-reseg" in capsys.readouterr().out


def test_hub_without_huggingface_hub_or_with_a_bad_name_is_a_named_error(monkeypatch):
    import reseg

    with pytest.raises(ResegError, match=r"hf://user/repo"):
        reseg.load("hf://no-slash-here", device="cpu")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    with pytest.raises(ResegError, match=r"pip install 'reseg\[hub\]'"):
        reseg.load("hf://someone/tiny-reseg", device="cpu")


def test_model_card_names_the_command_and_machine_a_checkpoint_records(tmp_path):
    state = {
        **_tiny_state(),
        "palette": PALETTE,
        "command": "reseg train configs/x.yaml --set data.root=d",
        "machine": "Some CPU (2 logical CPUs, no native bf16), torch 9.9",
    }
    save_checkpoint(state, tmp_path / "best.pt")
    card = (package(tmp_path / "best.pt", tmp_path / "model") / "README.md").read_text()
    assert "`reseg train configs/x.yaml --set data.root=d`" in card
    assert "Some CPU (2 logical CPUs, no native bf16), torch 9.9" in card
    assert "not recorded in the checkpoint" not in card


@pytest.mark.parametrize(
    "argv, command",
    [
        (["/venv/bin/reseg", "train", "a b.yaml", "--set", "x=1"], "reseg train 'a b.yaml' --set x=1"),
        (["/src/reseg/__main__.py", "train", "c.yaml"], "reseg train c.yaml"),
        (["tools/train.py", "c.yaml"], "python tools/train.py c.yaml"),
    ],
)
def test_the_launch_command_reads_as_typed(argv, command):
    from reseg.runtime import launch_command

    assert launch_command(argv) == command
