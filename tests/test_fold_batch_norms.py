"""Batch norms folded into their convolutions for inference: same outputs, fewer passes, nothing else moved."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from reseg.config import load_config
from reseg.errors import ResegError
from reseg.models import build_model
from reseg.models.vgg import InstanceBatchNorm2d
from reseg.predictor import Predictor
from reseg.runtime import fold_batch_norms


def _randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters far from their initial values, so a fold that drops or
    misplaces any of them shows in the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen))
                m.running_var.copy_(torch.rand(n, generator=gen) * 3 + 0.2)
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen))
    return model


def _model(name: str, *overrides: str) -> nn.Module:
    torch.manual_seed(0)
    keys = [f"model.name={name}", "model.encoder=vgg16_bn", "model.encoder_weights=null", *overrides]
    if name == "reseg":
        keys += ["model.renet_hidden=8", "model.decoder=skip", "model.encoder_width=0.25"]
    return _randomise_norms(build_model(load_config(None, keys), 5).eval())


def test_folded_conv_bn_relu_matches_the_unfolded_layers() -> None:
    seq = _randomise_norms(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())).eval()
    plain = copy.deepcopy(seq)
    x = torch.randn(2, 3, 9, 11)
    folded = fold_batch_norms(seq)
    assert folded is seq and len(seq) == 3
    assert isinstance(seq[1], nn.Identity) and isinstance(seq[2], nn.ReLU)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), plain(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "overrides"), [("reseg", ()), ("reseg", ("model.ibn_blocks=1",)), ("unet_vgg16", ())])
def test_whole_models_give_the_same_logits_folded(name: str, overrides: tuple[str, ...]) -> None:
    """Every plain batch norm after a conv goes (ReSeg's encoder and skip decoder, smp's U-Net); IBN-a's
    half-instance norms stay, since their output depends on the image."""
    model = _model(name, *overrides)
    norms_before = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    ibn = [m for m in norms_before if isinstance(m, InstanceBatchNorm2d)]
    plain = copy.deepcopy(model)
    folded = fold_batch_norms(model)
    left = [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)]
    assert left == ibn and len(norms_before) > len(ibn) + 2
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), plain(x), atol=1e-4, rtol=1e-4)


def test_norms_not_right_after_a_conv_and_norms_without_statistics_stay() -> None:
    after_relu = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    no_stats = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    for seq in (after_relu, no_stats):
        kinds = [type(m) for m in seq]
        fold_batch_norms(seq)
        assert [type(m) for m in seq] == kinds


def test_a_training_model_is_refused() -> None:
    with pytest.raises(ResegError, match="eval mode"):
        fold_batch_norms(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))


def test_the_predictor_runs_a_folded_copy_and_leaves_the_users_model_alone() -> None:
    model = _model("reseg")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    kinds = [type(m) for m in model.modules()]
    predictor = Predictor(model, "cpu", size_divisor=4)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x).argmax(1)
    masks = predictor.masks(x)
    assert predictor.model is model and [type(m) for m in model.modules()] == kinds
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert (masks == expected).float().mean() > 0.999
