"""The Python API (`import reseg`): a light import, load -> callable segmenter, build_model, train, and the
commands calling the same functions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_utils import REPO, make_tiny_dataset, one_thread, tiny_checkpoint, tiny_config  # noqa: F401  (one_thread: a fixture)

import reseg
from reseg.errors import ResegError

NAMES = ["sky", "road", "car", "tree"]
PALETTE = [[200, 0, 0], [0, 200, 0], [0, 0, 200], [90, 90, 90]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, checkpoint path): a tiny ReSeg whose head varies across pixels."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return tiny_checkpoint(path, NAMES, palette=PALETTE), path


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_import_reseg_loads_no_heavy_library():
    probe = (
        "import sys, reseg\n"
        "heavy = [m for m in ('torch', 'cv2', 'onnxruntime', 'segmentation_models_pytorch', 'huggingface_hub', "
        "'safetensors', 'numpy') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY:"


def test_public_names_resolve_and_are_documented():
    for name in reseg.__all__:
        value = getattr(reseg, name)
        assert name == "__version__" or value.__doc__, name
    assert set(reseg.__all__) <= set(dir(reseg))
    with pytest.raises(AttributeError):
        reseg.no_such_name  # noqa: B018


def test_segmenter_masks_equal_the_model_argmax(tiny, tmp_path):
    model, path = tiny
    seg = reseg.load(path, device="cpu")
    assert seg.class_names == NAMES and seg.palette == [tuple(c) for c in PALETTE]
    image = _image(64, 96)  # a multiple of the size divisor: the model sees exactly this image
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() - mean) / std
    with torch.inference_mode():
        expected = model(x).argmax(1)[0].numpy().astype(np.uint8)
    mask = seg(image)
    assert mask.dtype == np.uint8 and mask.shape == (64, 96)
    assert (mask == expected).mean() > 0.999  # float rounding may flip a near-tie
    assert len(np.unique(mask)) > 1
    file = tmp_path / "street.png"
    Image.fromarray(image).save(file)
    assert np.array_equal(seg(file), mask) and np.array_equal(seg(str(file)), mask)


def test_predict_with_probabilities_and_mixed_sizes(tiny):
    _, path = tiny
    seg = reseg.load(path, device="cpu")
    images = [_image(40, 56, 1), _image(33, 47, 2), _image(40, 56, 3)]
    masks, probs = seg.predict(images, probabilities=True)
    assert [m.shape for m in masks] == [(40, 56), (33, 47), (40, 56)]
    for image, mask, p in zip(images, masks, probs):
        assert p.shape == (len(NAMES), *image.shape[:2]) and p.dtype == np.float32
        np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)
        assert np.array_equal(p.argmax(0), mask)
        assert np.array_equal(seg(image), mask)
    assert [m.shape for m in seg.predict(images[1])] == [(33, 47)]  # one image is a list of one


def test_overlay_draws_the_palette(tiny):
    _, path = tiny
    seg = reseg.load(path, device="cpu")
    image = _image(32, 48)
    mask = seg(image)
    solid = seg.overlay(image, mask, opacity=1.0)
    assert np.array_equal(solid, np.asarray(PALETTE, np.uint8)[mask])
    half = seg.overlay(image, mask).astype(int)
    assert np.abs(half - (image.astype(int) + np.asarray(PALETTE)[mask]) / 2).max() <= 1


def test_bad_images_and_options_are_named_errors(tiny):
    _, path = tiny
    seg = reseg.load(path, device="cpu")
    with pytest.raises(ResegError, match="must be uint8"):
        seg(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ResegError, match=r"H x W x 3.*shape \(8, 8, 5\)"):
        seg(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(ResegError, match="numpy array .* or a file path, got list"):
        seg([[0, 1]])
    with pytest.raises(ResegError, match="unknown reseg.load option 'flipp'; did you mean flip"):
        reseg.load(path, device="cpu", flipp=True)
    tta = reseg.load(path, device="cpu", flip=True, scales=[0.5, 1.0])
    assert tta.predictor.flip and tta.predictor.scales == (0.5, 1.0)


def test_build_model_from_a_name_a_dict_or_a_file(tmp_path):
    x = torch.randn(1, 3, 32, 32)
    small = {"renet_layers": 1, "renet_hidden": 4, "decoder_filters": [4, 4]}
    net = reseg.build_model("reseg", num_classes=3, **small)
    assert net(x).shape == (1, 3, 32, 32)
    assert reseg.build_model({"name": "reseg", "num_classes": 5, **small})(x).shape[1] == 5
    yaml_file = tmp_path / "m.yaml"
    yaml_file.write_text("model:\n  renet_layers: 1\n  renet_hidden: 4\n  decoder_filters: [4, 4]\n")
    assert reseg.build_model(yaml_file, num_classes=2)(x).shape[1] == 2
    with pytest.raises(ResegError, match="unknown model 'resnet'"):
        reseg.build_model("resnet", num_classes=3)
    with pytest.raises(ResegError, match="unknown model option 'renet_hiden'; did you mean renet_hidden"):
        reseg.build_model("reseg", num_classes=3, renet_hiden=4)
    with pytest.raises(ResegError, match="num_classes"):
        reseg.build_model("reseg", **small)


def test_train_applies_keyword_overrides(tmp_path, one_thread):  # noqa: F811
    root = make_tiny_dataset(tmp_path / "data", train=8, val=2)
    config = tiny_config(root, train={"max_iters": 4, "val_interval": 2, "checkpoint_interval": 2})
    config["data"]["synthetic_sizes"] = [8, 2, 0]
    result = reseg.train(config, tmp_path / "run", progress=False, train={"max_iters": 2}, **{"optim.lr": 0.02})
    assert result["status"] == "finished" and result["iteration"] == 2
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["config"]["optim"]["lr"] == 0.02 and state["config"]["train"]["max_iters"] == 2
    seg = reseg.load(tmp_path / "run" / "last.pt", device="cpu")
    assert seg(_image(32, 48)).shape == (32, 48)
    with pytest.raises(ResegError, match="needs a work_dir"):
        reseg.train(config)
    with pytest.raises(ResegError, match="contradict"):
        reseg.train(config, tmp_path / "run", resume=True, overwrite=True)


def test_commands_call_the_library_functions(monkeypatch, tmp_path):
    import reseg.api
    import reseg.evaluation_runs
    from reseg.cli import main

    seen = {}

    def fake_train(cfg, work_dir, **kw):
        seen["train"] = (cfg, kw)
        return {"status": "finished", "iteration": 0, "best_mIoU": None, "best_iteration": None}

    def fake_evaluate(checkpoint, **kw):
        seen["evaluate"] = (checkpoint, kw)
        return {}

    monkeypatch.setattr(reseg.api, "train", fake_train)
    monkeypatch.setattr(reseg.evaluation_runs, "evaluate_checkpoint", fake_evaluate)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.yaml").write_text("train:\n  max_iters: 3\n")
    assert main(["train", "exp.yaml", "--resume"]) == 0
    cfg, kw = seen["train"]
    assert cfg.train.max_iters == 3 and kw["resume"] is True
    assert main(["evaluate", "--checkpoint", "x.pt", "--flip"]) == 0
    checkpoint, kw = seen["evaluate"]
    assert checkpoint == "x.pt" and kw["predictor_options"]["flip"] is True
    assert reseg.evaluate("x.pt", data_root="d", flip=True) == {}
    checkpoint, kw = seen["evaluate"]
    assert Path(checkpoint) == Path("x.pt") and kw["predictor_options"] == {"flip": True, "data_root": "d"}
