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
        for t in reversed(range(len(seq))) if suffix else range(len(seq)):
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
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(cell="lstm"),
        dict(renet_patch=2),
        dict(renet_layers=1),
        dict(renet_layers=3, renet_hidden=[3, 4, 5], renet_patch=[1, 2, 1]),
    ],
)
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


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(cut="conv9_9"), ["conv9_9", "conv3_3", "conv4_3", "conv5_3"]),
        (dict(arch="vgg19"), ["vgg19", "vgg16_bn"]),
        (dict(weights=123), ["123", "imagenet"]),
    ],
)
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


# ---------------------------------------------------------------- the skip decoder and the encoder width

_CONFIGS_DIR = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"
REPO_CONFIGS = sorted([*_CONFIGS_DIR.glob("*.yaml"), *_CONFIGS_DIR.glob("levers/*.yaml")])
VGG16_CONVS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]  # torchvision's cfg "D", in order


def _skip(**kw) -> ReSeg:
    args = dict(num_classes=5, renet_hidden=4, decoder="skip", decoder_channels=(8, 8), encoder_width=0.25)
    args.update(kw)
    return ReSeg(**args).eval()


@pytest.mark.parametrize("size", [(37, 47), (13, 90), (8, 8), (33, 31)])
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(skip_layers=["conv1_2"], decoder_channels=[8]),
        dict(renet_patch=2, cell="lstm"),
        dict(renet_layers=0),
        dict(
            encoder_cut="conv4_3",
            skip_layers=["conv3_3", "conv2_2", "conv1_2"],
            decoder_channels=[16, 8, 8],
            encoder="vgg16_bn",
        ),
    ],
)
def test_skip_decoder_logits_at_input_size(size: tuple[int, int], kw: dict) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        y = _skip(**kw)(torch.randn(2, 3, *size))
    assert y.shape == (2, 5, *size) and torch.isfinite(y).all()


def test_skip_decoder_keeps_global_context() -> None:
    """A pixel at the top-left corner moves the logits at the bottom-right corner only through ReNet:
    with no ReNet layer the convolutions' receptive field (about 62 px across) does not reach 64 px away.
    In float64, because a randomly initialised GRU forgets fast: the effect is ~1e-9 after 2x16 steps."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    x2 = x.clone()
    x2[0, :, 0, 0] += 5.0
    for layers in (2, 0):
        torch.manual_seed(0)
        model = _skip(renet_layers=layers).double()
        with torch.no_grad():
            diff = (model(x2) - model(x))[0]
        far = diff[:, -4:, -4:].abs().max().item()
        assert diff[:, :4, :4].abs().max() > 1e-3  # the change itself is seen near the pixel
        if layers:
            assert far > 1e-12, far
        else:
            assert far == 0.0, far


def test_skip_decoder_built_from_config_keys() -> None:
    cfg = load_config(
        None,
        [
            "model.decoder=skip",
            "model.skip_layers=[conv2_2]",
            "model.decoder_channels=[24]",
            "model.renet_hidden=6",
            "model.encoder_width=0.5",
        ],
    )
    model = build_model(cfg, 7)
    assert model.decoder_kind == "skip" and len(model.decoder.blocks) == 1
    first = model.decoder.blocks[0].fuse[0]
    assert first.in_channels == 2 * 6 + 64 and first.out_channels == 24  # ReNet output + half of conv2_2's 128
    assert model.classifier.in_channels == 24 and model.classifier.out_channels == 7
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 21, 30)).shape == (1, 7, 21, 30)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["model.skip_layers=[conv1_2, conv2_2]"], ["model.skip_layers", "deep to shallow", "['conv2_2', 'conv1_2']"]),
        (["model.skip_layers=[conv2_2, conv2_2]"], ["model.skip_layers", "each layer once"]),
        (["model.skip_layers=[conv9_9, conv1_2]"], ["model.skip_layers", "conv9_9", "conv2_2"]),
        (
            ["model.skip_layers=[conv3_3]", "model.decoder_channels=[8]"],
            ["model.skip_layers", "conv3_3", "model.encoder_cut"],
        ),
        (["model.decoder_channels=[8]"], ["model.decoder_channels", "one positive width per skip layer", "2"]),
        (["model.decoder_channels=[8, 8, 8]"], ["model.decoder_channels", "conv2_2", "conv1_2"]),
    ],
)
def test_skip_layers_validated(overrides: list[str], words: list[str]) -> None:
    cfg = load_config(None, ["model.decoder=skip", "model.renet_hidden=4", "model.encoder_width=0.125", *overrides])
    with pytest.raises(ResegError) as err:
        build_model(cfg, 3)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def _paper_param_count(classes: int) -> int:
    """The paper's CamVid model counted by hand: VGG-16 up to conv3_3, 2 bidirectional GRU ReNet layers of
    100 units (vertical then horizontal sweep each), two 2x2 transposed convs of 50 filters, a 1x1 classifier."""
    convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
    n = sum(9 * i * o + o for i, o in convs)

    def bigru(inp: int, hid: int = 100) -> int:
        return 2 * (3 * hid * (inp + hid) + 2 * 3 * hid)

    n += bigru(256) + bigru(200) + bigru(200) + bigru(200)
    n += (4 * 200 * 50 + 50) + (4 * 50 * 50 + 50) + (50 * classes + classes)
    return n


def test_paper_config_still_builds_the_paper_model() -> None:
    cfg = load_config(REPO_CONFIGS[0].parent / "reseg_camvid.yaml", ["model.encoder_weights=null"])
    assert cfg.model.decoder == "deconv" and cfg.model.encoder_width == 1.0
    model = build_model(cfg, 11)
    assert model.decoder_kind == "deconv" and model.skip_layers == []
    deconvs = [m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in deconvs] == [
        (200, 50, (2, 2), (2, 2)),
        (50, 50, (2, 2), (2, 2)),
    ]
    assert sum(p.numel() for p in model.parameters()) == _paper_param_count(11)
    assert [m.out_channels for m in model.encoder.features if isinstance(m, nn.Conv2d)] == VGG16_CONVS[:7]
    assert not model.resize  # stride 4 and two 2x upsamplings: logits at full resolution without a resize


@pytest.mark.parametrize("path", REPO_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_builds_its_model(path) -> None:
    cfg = load_config(path, ["model.encoder_weights=null"])  # no download; the architecture is what is checked
    model = build_model(cfg, cfg.model.num_classes or 11).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 35, 45)).shape == (1, cfg.model.num_classes or 11, 35, 45)


@pytest.mark.parametrize(
    "width, expected",
    [
        (0.125, [8, 8, 16, 16, 32, 32, 32, 64, 64, 64]),
        (0.3, [16, 16, 40, 40, 80, 80, 80, 152, 152, 152]),
        (0.5, [32, 32, 64, 64, 128, 128, 128, 256, 256, 256]),
        (1.0, VGG16_CONVS[:10]),
    ],
)
def test_encoder_width_scales_every_conv(width: float, expected: list[int]) -> None:
    enc = VGGEncoder("vgg16_bn", "conv4_3", width=width)
    convs = [m for m in enc.features if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == expected
    assert [m.in_channels for m in convs] == [3] + expected[:-1]
    assert [m.num_features for m in enc.features if isinstance(m, nn.BatchNorm2d)] == expected
    assert enc.out_channels == expected[-1]
    assert [enc.tap(n)[0] for n in ("conv1_2", "conv2_2", "conv3_3")] == [expected[1], expected[3], expected[6]]
    feats, taps = enc.forward_taps(torch.randn(1, 3, 32, 32), ["conv3_3", "conv2_2", "conv1_2"])
    assert feats.shape == (1, expected[-1], 4, 4)
    assert [t.shape[1:] for t in taps] == [(expected[6], 8, 8), (expected[3], 16, 16), (expected[1], 32, 32)]


@pytest.mark.parametrize("decoder", ["deconv", "skip"])
def test_narrow_reseg_output_shape(decoder: str) -> None:
    cfg = load_config(
        None,
        [f"model.decoder={decoder}", "model.renet_hidden=4", "model.decoder_filters=[4, 4]", "model.encoder_width=0.5"],
    )
    model = build_model(cfg, 5).eval()
    assert model.encoder.out_channels == 128 and model.renet[0].vertical.input_size == 128
    with torch.no_grad():
        assert model(torch.randn(2, 3, 29, 43)).shape == (2, 5, 29, 43)


@pytest.mark.parametrize("weights", ["imagenet", "FILE"])
def test_pretrained_weights_need_full_width(tmp_path, weights: str) -> None:
    if weights == "FILE":
        weights = str(tmp_path / "vgg16.pth")
        torch.save(vgg16().state_dict(), weights)
    cfg = load_config(None, ["model.encoder_width=0.5", f"model.encoder_weights={weights}"])
    with pytest.raises(ResegError) as err:
        build_model(cfg, 3)  # before any download or file read
    assert "model.encoder_width" in str(err.value) and "model.encoder_weights" in str(err.value)


def test_encoder_width_out_of_range_and_on_baselines() -> None:
    with pytest.raises(ResegError, match="model.encoder_width"):
        VGGEncoder(width=0.0)
    with pytest.raises(ResegError, match="model.encoder_width"):
        VGGEncoder(width=1.5)
    cfg = load_config(None, ["model.name=unet_vgg16", "model.encoder_width=0.5"])
    with pytest.raises(ResegError, match="model.encoder_width=0.5 applies to model.name=reseg only"):
        build_model(cfg, 3)


@pytest.mark.parametrize("bn", [False, True])
def test_vgg_layers_match_torchvision(bn: bool) -> None:
    """Our VGG-16 layers are torchvision's (same order, key names and shapes), so its weights load as they are."""
    from torchvision.models.vgg import cfgs, make_layers

    from reseg.models.vgg import VGG16_PLAN, vgg_layers

    ours, theirs = vgg_layers(list(VGG16_PLAN), bn), make_layers(cfgs["D"], batch_norm=bn)
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 32, 32)
    ours.eval(), theirs.eval()
    assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("name", sorted(__import__("reseg.models", fromlist=["MODELS"]).MODELS))
def test_every_model_follows_the_one_contract(name: str) -> None:
    """Every model in MODELS is a SegmentationModel: logits at any input size, its stride, encoder groups."""
    from reseg.config import load_config
    from reseg.models import build_model
    from reseg.models.base import SegmentationModel

    model = build_model(load_config(None, [f"model.name={name}", "model.encoder_weights=null"]), 5).eval()
    assert isinstance(model, SegmentationModel) and model.num_classes == 5
    with torch.no_grad():
        assert model(torch.randn(1, 3, 37, 45)).shape == (1, 5, 37, 45)  # sizes that are no multiple of the stride
        x = torch.randn(1, 3, 2 * model.stride, 3 * model.stride)
        assert torch.equal(model(x), model.forward_padded(x))
    groups = {g["name"]: g for g in model.param_groups(1.0, 0.1)}
    assert groups["encoder"]["lr"] == 0.1 and groups["head"]["lr"] == 1.0
    assert {id(p) for p in groups["encoder"]["params"]} == {id(p) for p in model.encoder.parameters()}


def test_every_reseg_argument_comes_from_the_model_config() -> None:
    """A ReSeg constructor argument without a ModelConfig field of the same name would never be set from a config."""
    import dataclasses
    import inspect

    from reseg.config import ModelConfig
    from reseg.models import config_kwargs
    from reseg.models.reseg import ReSeg

    args = set(inspect.signature(ReSeg).parameters) - {"num_classes"}
    assert args <= {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(config_kwargs(ReSeg, ModelConfig())) == args


@pytest.mark.parametrize("name", sorted(__import__("reseg.models", fromlist=["MODELS"]).MODELS))
def test_decoder_dropout_acts_before_the_classifier_of_every_model(name: str) -> None:
    """model.decoder_dropout drops whole decoder feature maps (scaling the rest by 1/(1-p)) while training, for
    every model; in eval mode and in the checkpoint's keys the model is the one without it."""
    from reseg.config import load_config

    def build(p: float) -> torch.nn.Module:
        return build_model(
            load_config(None, [f"model.name={name}", "model.encoder_weights=null", f"model.decoder_dropout={p}"]), 5
        )

    torch.manual_seed(0)
    plain, dropped = build(0.0), build(0.5)
    assert plain.state_dict().keys() == dropped.state_dict().keys()
    dropped.load_state_dict(plain.state_dict())
    seen = []
    dropped.head_dropout.register_forward_hook(lambda mod, inp, out: seen.append((inp[0], out)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(dropped.eval()(x), plain.eval()(x))
        torch.manual_seed(1)  # the same masks for the dropout layers some smp decoders have of their own
        trained = dropped.train()(x)
        torch.manual_seed(1)
        assert not torch.allclose(trained, plain.train()(x))
        feats, out = seen[-1]
        assert out.shape[1] > 1 and out.shape[1] != 5  # the decoder's features, not the logits
        dropped_maps = (out.abs().amax((2, 3)) == 0) & (feats.abs().amax((2, 3)) > 0)
        assert 0 < dropped_maps.float().mean() < 1
        kept = ~dropped_maps
        assert torch.allclose(out[kept], 2 * feats[kept])


@pytest.mark.parametrize("momentum", [0.1, None])
def test_instance_batch_norm_is_instance_norm_then_batch_norm(momentum: float | None) -> None:
    """IBN-a's norm against torch's own layers: the first half of the channels as InstanceNorm2d (with the
    same affine weights), the rest as BatchNorm2d, running statistics included; a BatchNorm2d state loads."""
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(7, momentum=momentum)
    nn.init.uniform_(plain.weight, 0.5, 1.5)
    nn.init.normal_(plain.bias)
    ibn = vgg_module.InstanceBatchNorm2d(7, momentum=momentum)
    ibn.load_state_dict(plain.state_dict())
    k = 3  # 7 // 2 channels per image
    per_image = nn.InstanceNorm2d(k, affine=True)
    per_batch = nn.BatchNorm2d(7 - k, momentum=momentum)
    with torch.no_grad():
        per_image.weight.copy_(plain.weight[:k]), per_image.bias.copy_(plain.bias[:k])
        per_batch.weight.copy_(plain.weight[k:]), per_batch.bias.copy_(plain.bias[k:])
    for training in (True, True, False):
        x = torch.randn(4, 7, 5, 6) * 3 + 2
        for m in (ibn, per_image, per_batch):
            m.train(training)
        expected = torch.cat([per_image(x[:, :k]), per_batch(x[:, k:])], dim=1)
        torch.testing.assert_close(ibn(x), expected)
    torch.testing.assert_close(ibn.running_mean[k:], per_batch.running_mean)
    torch.testing.assert_close(ibn.running_var[k:], per_batch.running_var)
    assert int(ibn.num_batches_tracked) == 2
    x = torch.randn(2, 7, 5, 6, requires_grad=True)
    ibn.train()(x).square().sum().backward()
    assert x.grad is not None and ibn.weight.grad is not None and ibn.weight.grad.abs().min() > 0


def test_ibn_blocks_swap_the_first_blocks_norms_of_both_encoders() -> None:
    """model.ibn_blocks=2 swaps the batch norms of VGG's first two blocks (two convs each) and no deeper one, in
    ReSeg's encoder and in smp's U-Net encoder alike; the weights keep their names, so a plain model's load."""

    def build(name: str, blocks: int) -> nn.Module:
        torch.manual_seed(0)
        overrides = [f"model.name={name}", "model.encoder=vgg16_bn", "model.encoder_weights=null"]
        return build_model(load_config(None, [*overrides, f"model.ibn_blocks={blocks}"]), 5).eval()

    for name in ("reseg", "unet_vgg16"):
        plain, ibn = build(name, 0), build(name, 2)
        norms = [m for m in ibn.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
        swapped = [isinstance(m, vgg_module.InstanceBatchNorm2d) for m in norms]
        assert swapped[:4] == [True] * 4 and not any(swapped[4:]), (name, swapped)
        ibn.load_state_dict(plain.state_dict())
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            assert not torch.allclose(ibn(x), plain(x))
            # the instance half of the first norm ignores each image's own brightness and contrast
            conv, first = ibn.encoder.features[0], ibn.encoder.features[1]  # the model contract's encoder
            y, y_scaled = first(conv(x)), first(conv(3 * x) - 2 * conv.bias.view(1, -1, 1, 1))
            k = first.instance_channels
            torch.testing.assert_close(y[:, :k], y_scaled[:, :k], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["model.encoder=vgg16", "model.ibn_blocks=2"], ["model.ibn_blocks=2", "vgg16_bn"]),
        (["model.encoder=vgg16_bn", "model.ibn_blocks=6"], ["model.ibn_blocks", "0 to 5", "6"]),
    ],
)
def test_ibn_blocks_errors_name_the_key(overrides: list[str], words: list[str]) -> None:
    with pytest.raises(ResegError) as err:
        build_model(load_config(None, ["model.encoder_weights=null", *overrides]), 5)
    assert all(w in str(err.value) for w in words), str(err.value)
