"""The one inference path: padding, sliding windows, TTA, checkpoints and normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reseg.config import load_config
from reseg.data.transforms import build_transforms
from reseg.engine.checkpoint import save_checkpoint
from reseg.errors import ResegError
from reseg.models import build_model
from reseg.predictor import Predictor, pad_to_multiple
from reseg.runtime import resolve_device

NAMES = ["sky", "road", "car", "tree", "person"]
PALETTE = [[10, 20, 30], [40, 50, 60], [70, 80, 90], [100, 110, 120], [130, 140, 150]]
TINY = ["model.renet_hidden=4", "model.decoder_filters=[4,4]"]


def tiny_model(seed: int = 0) -> tuple[nn.Module, object]:
    """A real ReSeg, tiny; its head is re-drawn so predictions vary across pixels instead of one class."""
    torch.manual_seed(seed)
    cfg = load_config(None, TINY)
    cfg.model.num_classes = len(NAMES)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("encoder"):
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 if p.dim() > 1 else 0.1))
    return model.eval(), cfg


def save_tiny_checkpoint(path: Path, model: nn.Module, cfg: object) -> Path:
    """A checkpoint as `reseg train` writes one, for the tiny model."""
    state = {"config": cfg.to_dict(), "model": model.state_dict(), "class_names": NAMES, "palette": PALETTE}
    save_checkpoint({**state, "epoch": 1, "iteration": 10}, path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, cfg = tiny_model()
    return model, cfg, save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, cfg)


def rand_batch(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


class NeedsMultipleOf32(nn.Module):
    """Stand-in for encoders that only accept sizes divisible by 32."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0, x.shape
        return self.conv(x)


def test_padding_crops_back_for_odd_sizes(tiny):
    model, _, _ = tiny
    for pad_mode in ("constant", "reflect"):
        pred = Predictor(NeedsMultipleOf32(), size_divisor=32, pad_mode=pad_mode)
        assert pred.logits(rand_batch(2, 37, 53)).shape == (2, 4, 37, 53)
    pred = Predictor(model, num_classes=len(NAMES))
    assert pred.logits(rand_batch(1, 37, 53)).shape == (1, 5, 37, 53)
    image = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    (mask,) = pred.predict([image])
    assert mask.shape == (33, 47) and mask.dtype == np.uint8 and mask.max() < len(NAMES)
    x = rand_batch(1, 5, 7)
    assert torch.equal(pad_to_multiple(x, 4)[..., :5, :7], x) and pad_to_multiple(x, 4).shape[-2:] == (8, 8)
    assert pad_to_multiple(x, 4)[..., 5:, :].abs().sum() == 0  # zeros in normalised space = the mean colour


def test_slide_with_full_crop_equals_whole(tiny):
    model, _, _ = tiny
    x = rand_batch(2, 40, 56)
    whole = Predictor(model).logits(x)
    slide = Predictor(model, mode="slide", crop=(40, 56), stride=(20, 28)).logits(x)
    torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-5)


def test_slide_averages_overlapping_windows_exactly():
    # a per-pixel model gives the same logits in every window, so any tiling must equal whole-image inference
    conv = nn.Conv2d(3, 5, 1)
    x = rand_batch(2, 37, 53)
    whole = Predictor(conv, size_divisor=1).logits(x)
    for crop, stride in (((16, 16), (10, 10)), ((20, 30), (7, 11)), ((64, 64), None)):
        slide = Predictor(conv, mode="slide", crop=crop, stride=stride, size_divisor=1).logits(x)
        assert slide.shape == whole.shape
        torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-5)


def test_flip_tta_equals_manual_flip_average(tiny):
    model, _, _ = tiny
    x = rand_batch(2, 48, 64, seed=3)
    plain = Predictor(model)
    manual = (plain.probs(x) + plain.probs(x.flip(-1)).flip(-1)) / 2
    tta = Predictor(model, flip=True)
    torch.testing.assert_close(tta.probs(x), manual, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tta.logits(x).softmax(1), manual, rtol=1e-4, atol=1e-6)
    assert torch.equal(tta.masks(x), manual.argmax(1).to(torch.uint8))


def test_multiscale_equals_manual_average(tiny):
    model, _, _ = tiny
    x = rand_batch(1, 48, 64, seed=4)
    plain = Predictor(model)
    small = F.interpolate(x, size=(24, 32), mode="bilinear", align_corners=False)
    p_small = F.interpolate(plain.logits(small), size=(48, 64), mode="bilinear", align_corners=False).softmax(1)
    manual = (p_small + plain.probs(x)) / 2
    torch.testing.assert_close(Predictor(model, scales=(0.5, 1.0)).probs(x), manual, rtol=1e-5, atol=1e-6)
    # infer_size runs the model smaller and returns full-size results
    out = Predictor(model, infer_size=(24, 32)).logits(x)
    torch.testing.assert_close(
        out, F.interpolate(plain.logits(small), size=(48, 64), mode="bilinear", align_corners=False)
    )


def test_from_checkpoint_restores_model_classes_and_settings(tiny):
    model, _, path = tiny
    pred = Predictor.from_checkpoint(path, device="auto")
    assert pred.device == resolve_device("auto")
    assert pred.class_names == NAMES and pred.palette == [tuple(c) for c in PALETTE]
    assert pred.config.model.renet_hidden == 4 and pred.num_classes == 5
    assert pred.mode == "whole" and not pred.flip and pred.scales == (1.0,)
    assert pred.size_divisor == 32  # cfg.data.size_divisor
    x = rand_batch(1, 64, 96)  # already a multiple of 32: no padding, so exactly the model's output
    with torch.inference_mode():
        direct = model(x)
    cpu = pred if pred.device.type == "cpu" else Predictor.from_checkpoint(path, device="cpu")
    torch.testing.assert_close(cpu.logits(x), direct, rtol=1e-5, atol=1e-5)
    over = Predictor.from_checkpoint(path, device="cpu", mode="slide", crop=[32, 32], flip=True, scales=None)
    assert over.mode == "slide" and over.crop == (32, 32) and over.flip and over.scales == (1.0,)


def test_one_map_turns_a_config_and_the_command_line_into_predictor_arguments(tiny):
    """config.INFERENCE_KEYS: each key of a config reaches the Predictor under its argument name
    (from_config, which the trainer's validation uses), and the command line's options carry the same names."""
    import argparse
    import copy
    import inspect

    from reseg.commands.common import add_inference_arguments, predictor_options
    from reseg.config import INFERENCE_KEYS

    model, cfg, _ = tiny
    cfg = copy.deepcopy(cfg)
    cfg.eval.mode, cfg.eval.crop, cfg.eval.stride, cfg.eval.flip = "slide", [32, 40], [16, 20], True
    cfg.eval.scales, cfg.data.size_divisor, cfg.data.eval_size = [0.5, 1.0], 16, [48, 64]
    pred = Predictor.from_config(model, cfg, NAMES, device="cpu")
    assert (pred.mode, pred.crop, pred.stride, pred.flip, pred.scales, pred.size_divisor, pred.infer_size) == (
        "slide",
        (32, 40),
        (16, 20),
        True,
        (0.5, 1.0),
        16,
        (48, 64),
    )
    assert Predictor.from_config(model, cfg, NAMES, device="cpu", flip=False, mode=None).flip is False
    arguments = set(inspect.signature(Predictor).parameters)
    assert set(INFERENCE_KEYS.values()) <= arguments
    parser = argparse.ArgumentParser()
    add_inference_arguments(parser)
    opts = predictor_options(parser.parse_args(["--mode", "slide", "--crop", "8", "8", "--infer-size", "24", "32"]))
    assert set(opts) - {"data_root"} <= arguments  # data_root goes to from_checkpoint
    assert opts["mode"] == "slide" and list(opts["crop"]) == [8, 8] and list(opts["infer_size"]) == [24, 32]


def test_predict_images_of_mixed_sizes_with_probs(tiny):
    model, _, _ = tiny
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in ((48, 64, 3), (48, 64, 3), (30, 40, 3))]
    pred = Predictor(model, num_classes=5)
    masks, probs = pred.predict(images, return_probs=True, batch_size=4)
    assert [m.shape for m in masks] == [(48, 64), (48, 64), (30, 40)]
    assert [p.shape for p in probs] == [(5, 48, 64), (5, 48, 64), (5, 30, 40)]
    np.testing.assert_allclose(probs[2].sum(0), 1.0, atol=1e-5)
    assert all(np.array_equal(m, p.argmax(0)) for m, p in zip(masks, probs))
    singles = pred.predict(images, batch_size=1)
    agree = np.mean([np.mean(a == b) for a, b in zip(masks, singles)])
    assert agree > 0.999  # batching changes nothing but float rounding


def test_preprocess_normalises_like_imagenet_training():
    pred = Predictor(nn.Conv2d(3, 2, 1))
    img = np.random.default_rng(2).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    x = pred.preprocess([img])[0]
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), (img - mean) / std, rtol=1e-5, atol=1e-5)


def test_preprocess_matches_the_training_transform():
    cfg = load_config(None, [])
    tf = build_transforms(cfg, train=False)
    img = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = tf(image=img, mask=np.zeros((48, 64), np.uint8))["image"]
    out = torch.as_tensor(np.asarray(out) if not isinstance(out, torch.Tensor) else out)
    if out.shape[-1] == 3:
        out = out.permute(2, 0, 1)
    x = Predictor(nn.Conv2d(3, 2, 1)).preprocess([img])[0]
    torch.testing.assert_close(x, out.float(), rtol=1e-5, atol=1e-5)


def test_fast_paths_agree_with_fp32(tiny):
    model, _, _ = tiny
    x = rand_batch(2, 48, 64, seed=7)
    ref = Predictor(model).masks(x)
    cl = Predictor(model, channels_last=True).masks(x)
    assert (cl == ref).float().mean() > 0.999
    bf16 = Predictor(model, amp="bf16")
    assert bf16.amp_dtype == torch.bfloat16
    assert (bf16.masks(x) == ref).float().mean() > 0.8
    assert Predictor(model, amp=False).amp_dtype is None


def test_bad_settings_are_clear_errors():
    conv = nn.Conv2d(3, 2, 1)
    with pytest.raises(ResegError, match="crop"):
        Predictor(conv, mode="slide")
    with pytest.raises(ResegError, match="mode"):
        Predictor(conv, mode="tiles")
    with pytest.raises(ResegError, match="scales"):
        Predictor(conv, scales=(0.0,))
    with pytest.raises(ResegError, match="3 classes"):
        Predictor(conv, num_classes=3).logits(rand_batch(1, 8, 8))
    if not torch.cuda.is_available():
        with pytest.raises(ResegError, match="CUDA"):
            Predictor(conv, device="cuda")
    with pytest.raises(ResegError, match="uint8"):
        Predictor(conv).preprocess([np.zeros((4, 4, 3), np.float32)])


def test_damaged_or_foreign_checkpoints_give_clear_errors(tiny, tmp_path):
    model, cfg, path = tiny
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:5000])
    foreign = tmp_path / "foreign.pt"
    torch.save(model.state_dict(), foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    mismatch = tmp_path / "mismatch.pt"
    save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "class_names": NAMES + ["extra"]}, mismatch)
    bad_config = tmp_path / "bad_config.pt"
    save_checkpoint(
        {"config": {"model": {"no_such_key": 1}}, "model": model.state_dict(), "class_names": NAMES}, bad_config
    )
    for file, words in (
        (truncated, "damaged"),
        (foreign, "not a reseg checkpoint"),
        (garbage, "not a PyTorch checkpoint (it is text"),
        (mismatch, "does not match"),
        (bad_config, "config"),
        (tmp_path / "missing.pt", "not found"),
    ):
        with pytest.raises(ResegError) as err:
            Predictor.from_checkpoint(file, device="cpu")
        assert str(file) in str(err.value) and words in str(err.value), str(err.value)


def test_loading_a_checkpoint_skips_random_initialisation(tiny, monkeypatch):
    """The model is built on the meta device and the weights assigned: the orthogonal GRU initialisation (seconds
    on a busy CPU) never runs on real memory, and the weights are the checkpoint's, bit for bit."""
    model, _, path = tiny
    real = torch.nn.init.orthogonal_
    on_real_memory = []

    def spy(tensor, *args, **kwargs):
        on_real_memory.append(not tensor.is_meta)
        return real(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "orthogonal_", spy)
    loaded = Predictor.from_checkpoint(path, device="cpu").model
    assert on_real_memory and not any(on_real_memory)
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_class_ids_is_argmax_with_first_index_on_ties(layout):
    """The masks' one logits -> classes step equals argmax (first maximum on ties) in either memory layout."""
    from reseg.preprocess import class_ids

    logits = torch.randint(0, 3, (2, 11, 17, 23)).float()  # few values: many ties
    if layout == "channels_last":
        logits = logits.contiguous(memory_format=torch.channels_last)
    ids = class_ids(logits)
    assert ids.dtype == torch.uint8 and torch.equal(ids.long(), logits.argmax(1))
    assert torch.equal(class_ids(logits[0], dim=0).long(), logits[0].argmax(0))


def test_large_images_run_at_the_trained_scale_unless_a_size_is_given(tiny, tmp_path):
    from reseg.mask_files import predict_files

    model, _, _ = tiny
    seen: list[tuple[int, int]] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[-2:])))
    image = (np.random.default_rng(0).random((128, 256, 3)) * 255).astype(np.uint8)
    capped = Predictor(model, device="cpu", max_pixels=64 * 64, size_divisor=1, class_names=NAMES, palette=PALETTE)
    assert capped.run_size(128, 256) == (45, 91) and capped.run_size(40, 60) == (40, 60)
    mask = capped.predict([image])[0]
    assert seen[-1] == (45, 91) and mask.shape == (128, 256)
    # the same as asking for that size explicitly, which wins over the cap
    explicit = Predictor(model, device="cpu", infer_size=(45, 91), max_pixels=10, size_divisor=1)
    assert np.array_equal(explicit.predict([image])[0], mask)
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(tmp_path / "big.png"), image)
    result = predict_files(capped, [(tmp_path / "big.png", "big")], tmp_path / "out", progress=False)
    assert result.resized == {(128, 256): (45, 91)}
    model._forward_pre_hooks.clear()


@pytest.mark.parametrize(
    ("config", "frame", "runs_at"),
    [
        ("reseg_synthetic.yaml", (3000, 4000), (240, 320)),  # the demo: 120x160 scenes, a phone photo
        ("reseg_synthetic.yaml", (120, 160), (120, 160)),
        ("reseg_skip_cityscapes.yaml", (1024, 2048), (1024, 2048)),  # full Cityscapes frames run as they are
        ("reseg_skip_camvid_cpu.yaml", (3000, 4000), (192, 256)),  # data.eval_size decides
    ],
)
def test_the_default_run_size_follows_the_training_config(config, frame, runs_at):
    from reseg.config import inference_settings

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / config)
    settings = inference_settings(cfg)
    predictor = Predictor(
        nn.Conv2d(3, 2, 1), device="cpu", infer_size=settings["infer_size"], max_pixels=settings["max_pixels"]
    )
    assert predictor.run_size(*frame) == runs_at
