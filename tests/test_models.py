"""ReSeg model: shapes for any size, ReNet against a naive loop, global context, encoder weights and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import vgg16

from reseg.config import load_config
from reseg.errors import ResegError
from reseg.models import ReNet, ReSeg, VGGEncoder, build_model
from reseg.models import vgg as vgg_module


def _gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
    ir, iz, in_ = gi.chunk(3)
    hr, hz, hn = gh.chunk(3)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    n = torch.tanh(in_ + r * hn)
    return (1 - z) * n + z * h, None


def _lstm_step(x, state, w_ih, w_hh, b_ih, b_hh):
    h, c = state
    i, f, g, o = (w_ih @ x + b_ih + w_hh @ h + b_hh).chunk(4)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _naive_birnn(seq: list[torch.Tensor], rnn: nn.RNNBase) -> list[torch.Tensor]:
    """Run a bidirectional single-layer RNN one position at a time, from the raw weights."""
    lstm = isinstance(rnn, nn.LSTM)
    outs = []
    for suffix in ("", "_reverse"):
        w = [getattr(rnn, f"{n}_l0{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h, c = torch.zeros(rnn.hidden_size), torch.zeros(rnn.hidden_size)
        res = [None] * len(seq)
        for t in (reversed(range(len(seq))) if suffix else range(len(seq))):
            h, c = _lstm_step(seq[t], (h, c), *w) if lstm else _gru_step(seq[t], h, *w)
            res[t] = h
        outs.append(res)
    return [torch.cat([f, b]) for f, b in zip(*outs)]


def _naive_renet(x: torch.Tensor, layer: ReNet) -> torch.Tensor:
    x = layer.patchify(x)
    n, _, hh, ww = x.shape
    mid = torch.zeros(n, layer.out_channels, hh, ww)
    for b in range(n):
        for j in range(ww):
            col = _naive_birnn([x[b, :, i, j] for i in range(hh)], layer.vertical)
            for i in range(hh):
                mid[b, :, i, j] = col[i]
    out = torch.zeros_like(mid)
    for b in range(n):
        for i in range(hh):
            row = _naive_birnn([mid[b, :, i, j] for j in range(ww)], layer.horizontal)
            for j in range(ww):
                out[b, :, i, j] = row[j]
    return out


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("patch", [1, 2])
def test_renet_matches_naive_loop(cell: str, patch: int) -> None:
    torch.manual_seed(0)
    layer = ReNet(3, 4, patch_size=patch, cell=cell)
    for p in layer.parameters():  # non-zero biases so that they are checked too
        nn.init.uniform_(p, -0.5, 0.5)
    x = torch.randn(2, 3, 5, 7)  # odd sizes exercise the patch padding
    with torch.no_grad():
        ours, ref = layer(x), _naive_renet(x, layer)
    assert ours.shape == (2, 8, -(-5 // patch), -(-7 // patch))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_renet_recurrent_weights_orthogonal() -> None:
    layer = ReNet(8, 6)
    w = layer.vertical.weight_hh_l0.detach()
    for chunk in w.chunk(3):
        torch.testing.assert_close(chunk @ chunk.T, torch.eye(6), atol=1e-5, rtol=0)


def _tiny(**kw) -> ReSeg:
    args = dict(num_classes=5, renet_hidden=4, decoder_filters=(4, 4))
    args.update(kw)
    return ReSeg(**args).eval()


@pytest.mark.parametrize("size", [(36, 48), (37, 47), (8, 8), (13, 90)])
@pytest.mark.parametrize("kw", [dict(), dict(cell="lstm"), dict(renet_patch=2), dict(renet_layers=1),
                                dict(renet_layers=3, renet_hidden=[3, 4, 5], renet_patch=[1, 2, 1])])
def test_reseg_output_shape_any_size(size: tuple[int, int], kw: dict) -> None:
    with torch.no_grad():
        y = _tiny(**kw)(torch.randn(2, 3, *size))
    assert y.shape == (2, 5, *size)


def test_reseg_other_cuts_and_bn() -> None:
    for cut in ("conv4_3", "conv5_3"):
        model = _tiny(encoder="vgg16_bn", encoder_cut=cut)
        with torch.no_grad():
            assert model(torch.randn(1, 3, 35, 50)).shape == (1, 5, 35, 50)


def test_global_context_reaches_far_corner() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    x2 = x.clone()
    x2[0, :, 0, 0] += 5.0
    for layers, expect_change in ((2, True), (0, False)):
        torch.manual_seed(0)
        model = _tiny(renet_layers=layers)
        with torch.no_grad():
            delta = (model(x2) - model(x))[0, :, -4:, -4:].abs().max().item()
        assert (delta > 1e-6) == expect_change, (layers, delta)


def test_frozen_encoder_gets_no_gradients_and_stays_eval() -> None:
    model = _tiny(encoder="vgg16_bn", freeze_encoder=True)
    model.train()
    assert not model.encoder.training
    model(torch.randn(1, 3, 16, 16)).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.renet.parameters())
    names = [g["name"] for g in model.param_groups(0.1, 0.1)]
    assert names == ["head"]


def test_param_groups_encoder_multiplier() -> None:
    model = _tiny()
    groups = {g["name"]: g for g in model.param_groups(0.1, 0.01)}
    assert groups["encoder"]["lr"] == pytest.approx(0.001)
    n_enc = sum(p.numel() for p in groups["encoder"]["params"])
    assert n_enc == sum(p.numel() for p in model.encoder.parameters())


def test_weights_file_loads_identically(tmp_path) -> None:
    torch.manual_seed(1)
    reference = vgg16()
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    enc = VGGEncoder("vgg16", "conv3_3", weights=str(path)).eval()
    x = torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), reference.features[:16](x))
    assert enc(x).shape == (1, 256, 6, 6)


def test_imagenet_cache_used_offline(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = vgg_module.imagenet_cache_path("vgg16")
    assert str(cached).startswith(str(tmp_path))
    cached.parent.mkdir(parents=True)
    torch.manual_seed(2)
    reference = vgg16()
    torch.save(reference.state_dict(), cached)
    enc = VGGEncoder("vgg16", weights="imagenet").eval()
    torch.testing.assert_close(enc.features[0].weight, reference.features[0].weight)


def test_imagenet_without_cache_or_network_says_where(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ResegError) as err:
        VGGEncoder("vgg16", weights="imagenet")
    assert str(vgg_module.imagenet_cache_path("vgg16")) in str(err.value)
    assert "vgg16-397923af.pth" in str(err.value)


@pytest.mark.parametrize("kwargs, words", [
    (dict(cut="conv9_9"), ["conv9_9", "conv3_3", "conv4_3", "conv5_3"]),
    (dict(arch="vgg19"), ["vgg19", "vgg16_bn"]),
    (dict(weights=123), ["123", "imagenet"]),
])
def test_bad_encoder_choices_list_valid_ones(kwargs, words) -> None:
    with pytest.raises(ResegError) as err:
        VGGEncoder(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_bad_cell_lists_choices() -> None:
    with pytest.raises(ResegError, match="gru, lstm"):
        ReNet(3, 4, cell="rnn")


def test_weights_file_errors(tmp_path) -> None:
    with pytest.raises(ResegError, match="not found"):
        VGGEncoder(weights=str(tmp_path / "missing.pth"))
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ResegError, match="garbage.pth"):
        VGGEncoder(weights=str(bad))
    wrong = tmp_path / "wrong.pth"
    state = vgg16().state_dict()
    state["features.2.weight"] = torch.zeros(1)
    del state["features.0.bias"]
    torch.save(state, wrong)
    with pytest.raises(ResegError) as err:
        VGGEncoder(weights=str(wrong))
    assert "wrong.pth" in str(err.value) and "0.bias" in str(err.value) and "2.weight" in str(err.value)


def test_build_model_factory_and_baselines() -> None:
    cfg = load_config(None, ["model.renet_hidden=4", "model.decoder_filters=[4, 4]"])
    assert isinstance(build_model(cfg, 3), ReSeg)
    for name in ("unet_vgg16", "fpn_vgg16", "deeplabv3plus_vgg16"):
        cfg.model.name = name
        model = build_model(cfg, 3).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 33, 47)).shape == (1, 3, 33, 47)
        assert {g["name"] for g in model.param_groups(0.1, 0.1)} == {"head", "encoder"}
    cfg.model.name = "segformer"
    with pytest.raises(ResegError, match="unet_vgg16"):
        build_model(cfg, 3)
