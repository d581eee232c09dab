"""Inference backends: ONNX Runtime fp32 equals eager (fixed-size files for minGRU models), int8 keeps the
classes, the cache, the errors, the flags, and `auto`'s choice (with fake timings)."""

from __future__ import annotations

import argparse
import shutil

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from reseg import backends
from reseg.backends import BackendError
from reseg.config import load_config
from reseg.engine.checkpoint import save_checkpoint
from reseg.errors import ResegError
from reseg.models import build_model
from reseg.onnx.session import OnnxSession
from reseg.predictor import Predictor

pytest.importorskip("onnxruntime")

NAMES = ["sky", "road", "car", "tree", "person"]
TINY = ["model.renet_hidden=4", "model.decoder_filters=[4,4]", "model.encoder_width=0.125"]


def tiny_model(seed: int = 0, cell: str = "gru") -> tuple[nn.Module, object]:
    """A real ReSeg, narrow, trained-ish: decoder and classifier re-drawn so that several classes share an image
    (a fresh head gives one class everywhere), encoder and GRUs as initialised (their recurrence contracts, as
    a trained one does; GRU weights drawn at std 1 make it chaotic, which no training produces)."""
    torch.manual_seed(seed)
    cfg = load_config(None, [*TINY, f"model.cell={cell}"])
    cfg.model.num_classes = len(NAMES)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("decoder", "classifier")):
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 if p.dim() > 1 else 0.1))
    return model.eval(), cfg


def scenes(n: int, h: int = 48, w: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Street-like RGB images: a few flat-coloured rectangles with noise (what calibration and tests see)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.int64)
        for _ in range(4):
            y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
            img[y0 : y0 + rng.integers(4, h), x0 : x0 + rng.integers(4, w)] = rng.integers(0, 256, 3)
        out.append(np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, config, checkpoint path, cache folder): one export and one quantisation for the module."""
    model, cfg = tiny_model()
    root = tmp_path_factory.mktemp("backends")
    path = root / "tiny.pt"
    save_checkpoint(
        {"config": cfg.to_dict(), "model": model.state_dict(), "class_names": NAMES, "epoch": 1, "iteration": 10}, path
    )
    return model, cfg, path, root / "cache"


def test_onnxruntime_equals_eager_at_two_sizes(tiny):
    model, _, _, cache = tiny
    eager = Predictor(model, num_classes=len(NAMES))
    ort = Predictor(model, num_classes=len(NAMES), backend="onnxruntime", backend_cache=cache)
    assert ort.backend == "onnxruntime" and "backend=onnxruntime" in ort.describe()
    gen = torch.Generator().manual_seed(3)
    for n, h, w in ((1, 64, 96), (2, 37, 53)):  # the second is padded to 32 and cropped back
        x = torch.randn(n, 3, h, w, generator=gen)
        ref, got = eager.logits(x), ort.logits(x)
        assert got.shape == ref.shape == (n, len(NAMES), h, w)
        scale = float(ref.max() - ref.min())
        torch.testing.assert_close(got, ref, atol=1e-4 * scale, rtol=1e-4)


def test_onnxruntime_runs_tta_and_sliding_windows_like_eager(tiny):
    model, _, _, cache = tiny
    x = torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(4))
    for opts in ({"flip": True, "scales": (0.75, 1.0)}, {"mode": "slide", "crop": (32, 32)}):
        ref = Predictor(model, **opts).probs(x)
        got = Predictor(model, backend="onnxruntime", backend_cache=cache, **opts).probs(x)
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-3)


def test_int8_keeps_the_class_of_most_pixels(tiny):
    """int8 rounds each activation to 1/255 of its calibrated range (weights to 1/63 per channel with
    reduce_range): logits move by about a per cent of their range, so only pixels whose two best classes are
    about that close can change class, mostly on class borders. Measured: 99.5% here, 99.6% on a briefly
    trained demo checkpoint. 97% leaves room for other BLAS/rounding while a wrong scale, zero point or
    input normalisation moves whole regions."""
    model, _, _, cache = tiny
    fp32 = Predictor(model, size_divisor=16)
    int8 = Predictor(model, size_divisor=16, int8=True, calibration=scenes(8, seed=1), backend_cache=cache)
    assert int8.backend == "onnxruntime-int8"
    test = scenes(6, seed=2)
    agree = np.mean([np.mean(a == b) for a, b in zip(fp32.predict(test), int8.predict(test))])
    assert agree >= 0.97, agree
    x = int8.preprocess(test[:2])
    ref, got = fp32.logits(x), int8.logits(x)
    assert float((ref - got).abs().max()) < 0.1 * float(ref.max() - ref.min())
    # the quantised graph really is int8: every convolution but the classifier is a QLinearConv
    import onnx

    ops = [n.op_type for n in onnx.load(str(int8._net.path)).graph.node]
    assert ops.count("QLinearConv") == sum(isinstance(m, nn.Conv2d) for m in model.modules()) - 1
    assert ops.count("Conv") == 1 and "GRU" in ops


def test_the_cache_is_reused_without_exporting_or_building(tiny, monkeypatch):
    _, _, path, cache = tiny
    first = Predictor.from_checkpoint(path, backend="onnxruntime", backend_cache=cache)
    assert first.device.type == "cpu"  # "auto" means the CPU for ONNX Runtime

    def refuse(*args, **kwargs):
        raise AssertionError("exported again although the cache holds the file")

    monkeypatch.setattr(backends, "export_fp32", refuse)
    again = Predictor.from_checkpoint(path, backend="onnxruntime", backend_cache=cache)
    assert again._net.path == first._net.path and again._model is None  # the PyTorch model was never built
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(again.logits(x), first.logits(x))
    assert isinstance(again.model, nn.Module)  # built on demand


def test_a_damaged_cache_file_is_rebuilt_and_other_weights_get_their_own(tiny, tmp_path):
    model, _, _, _ = tiny
    cache = tmp_path / "cache"
    made = Predictor(model, backend="onnxruntime", backend_cache=cache)._net.path
    made.write_bytes(b"not onnx")
    rebuilt = Predictor(model, backend="onnxruntime", backend_cache=cache)
    assert rebuilt._net.path == made and made.stat().st_size > 1000
    other, _ = tiny_model(seed=5)
    assert Predictor(other, backend="onnxruntime", backend_cache=cache)._net.path != made


def test_backend_errors_are_named(tiny, tmp_path):
    model, cfg, _, cache = tiny
    with pytest.raises(BackendError, match="unknown inference backend 'tensorrt'.*eager, onnxruntime"):
        Predictor(model, backend="tensorrt")
    with pytest.raises(BackendError, match="int8 .*ONNX Runtime.*--backend onnxruntime --int8"):
        Predictor(model, backend="eager", int8=True)
    for kw, flag in (
        ({"amp": "bf16"}, "--amp"),
        ({"channels_last": True}, "--channels-last"),
        ({"compile": True}, "--compile"),
    ):
        with pytest.raises(BackendError, match=f"{flag} applies to the eager backend"):
            Predictor(model, backend="onnxruntime", backend_cache=cache, **kw)
    with pytest.raises(BackendError, match="runs on the CPU.*cuda"):
        backends.check_settings("onnxruntime", torch.device("cuda"), None, False, False)
    with pytest.raises(BackendError, match="calibration images"):
        Predictor(model, int8=True, backend_cache=cache)
    # a checkpoint whose training data is gone: the error names the data root and the way out
    cfg.data.root = str(tmp_path / "gone")
    ckpt = tmp_path / "moved.pt"
    save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "class_names": NAMES}, ckpt)
    with pytest.raises(BackendError) as err:
        Predictor.from_checkpoint(ckpt, int8=True, backend_cache=tmp_path / "c2")
    assert str(tmp_path / "gone") in str(err.value) and "--calibration" in str(err.value)
    with pytest.raises(BackendError, match="moved-here"):  # evaluate's --data-root: where the data is now
        Predictor.from_checkpoint(ckpt, int8=True, data_root=tmp_path / "moved-here", backend_cache=tmp_path / "c2")


def test_inference_flags_reach_the_predictor(tiny, tmp_path, monkeypatch):
    """predict, video and evaluate share the flags; each passes them to Predictor.from_checkpoint."""
    from reseg.cli import main
    from reseg.commands.common import add_inference_arguments, predictor_options

    parser = argparse.ArgumentParser()
    add_inference_arguments(parser)
    opts = predictor_options(parser.parse_args(["--int8", "--calibration", "a.png", "b/"]))
    assert opts["int8"] is True and opts["backend"] is None and opts["calibration"] == ["a.png", "b/"]
    assert predictor_options(parser.parse_args([]))["backend"] is None  # the checkpoint/eager default

    seen = []

    class Stop(ResegError):  # main() reports it and returns 2: the command got as far as the Predictor
        pass

    def record(cls, path, device="auto", **kw):
        seen.append(kw)
        raise Stop

    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(record))
    _, _, ckpt, _ = tiny
    img = tmp_path / "frames" / "0001.png"
    img.parent.mkdir()
    cv2.imwrite(str(img), scenes(1)[0])
    flags = ["--backend", "onnxruntime", "--int8", "--calibration", str(img.parent)]
    commands = (
        ["predict", "--checkpoint", str(ckpt), str(img), "--out", str(tmp_path / "p")],
        ["video", str(img.parent), "--checkpoint", str(ckpt), "--output", str(tmp_path / "v.avi")],
        ["evaluate", "--checkpoint", str(ckpt), "--out", str(tmp_path / "e")],
    )
    for i, argv in enumerate(commands):
        assert main(argv + flags) == 2
        assert len(seen) == i + 1, f"{argv[0]} did not build its predictor through Predictor.from_checkpoint"
    for kw in seen:
        assert kw["backend"] == "onnxruntime" and kw["int8"] is True and kw["calibration"] == [str(img.parent)]


def test_predict_command_with_onnxruntime_writes_the_same_masks(tiny, tmp_path, monkeypatch):
    from reseg.cli import main

    _, _, ckpt, cache = tiny
    monkeypatch.setenv("RESEG_CACHE_DIR", str(cache))
    img = tmp_path / "in" / "street.png"
    img.parent.mkdir()
    rgb = scenes(1, 45, 61, seed=7)[0]
    cv2.imwrite(str(img), rgb[..., ::-1])
    assert (
        main(
            ["predict", "--checkpoint", str(ckpt), str(img), "--backend", "onnxruntime", "--out", str(tmp_path / "out")]
        )
        == 0
    )
    written = cv2.imread(str(tmp_path / "out" / "street.png"), cv2.IMREAD_UNCHANGED)
    expected = Predictor.from_checkpoint(ckpt, backend="onnxruntime", backend_cache=cache).predict([rgb])[0]
    np.testing.assert_array_equal(written, expected)


def test_export_writes_the_int8_model_with_its_agreement(tiny, tmp_path, capsys):
    from reseg.cli import main

    _, _, ckpt, _ = tiny
    folder = tmp_path / "calib"
    folder.mkdir()
    for i, im in enumerate(scenes(3, seed=9)):
        cv2.imwrite(str(folder / f"{i}.png"), im[..., ::-1])
    out, report = tmp_path / "int8.onnx", tmp_path / "int8.json"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(ckpt),
                "--format",
                "onnx",
                "--int8",
                "--calibration",
                str(folder),
                "--out",
                str(out),
                "--json",
                str(report),
            ]
        )
        == 0
    )
    import json

    res = json.loads(report.read_text())
    assert res["int8"]["calibration_images"] == 3 and 0.9 <= res["int8"]["pixel_agreement"] <= 1.0
    assert "int8" in capsys.readouterr().out
    sess = OnnxSession(out)
    assert sess(torch.randn(2, 3, 40, 56)).shape == (2, len(NAMES), 40, 56)
    assert (
        main(
            ["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--int8", "--out", str(tmp_path / "m.pt")]
        )
        == 2
    )


def test_quieting_the_quantizer_leaves_every_other_message_and_level_alone():
    """The quantiser's advice goes through the root logger from its own files: only those records are dropped
    (an ERROR still shows), no level but the quantiser's own logger's changes, and all is restored on exit."""
    import logging
    import os

    from onnxruntime import quantization

    from reseg.onnx.quantize import quiet_quantizer

    root, own = logging.getLogger(), logging.getLogger("onnxruntime.quantization")
    levels = (root.level, own.level)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = seen.append
    quantizer_file = os.path.join(os.path.dirname(quantization.__file__), "quantize.py")

    def log_both() -> None:
        for path, level in (
            (quantizer_file, logging.WARNING),
            (__file__, logging.WARNING),
            (quantizer_file, logging.ERROR),
        ):
            root.handle(root.makeRecord("root", level, path, 1, "advice", (), None))

    root.addHandler(handler)
    try:
        with quiet_quantizer():
            assert root.level == levels[0] and own.getEffectiveLevel() == logging.ERROR
            log_both()
        kept = [(r.pathname, r.levelno) for r in seen]
        assert kept == [(__file__, logging.WARNING), (quantizer_file, logging.ERROR)]
        assert (root.level, own.level) == levels
        seen.clear()
        log_both()
        assert len(seen) == 3  # the filter is gone
    finally:
        root.removeHandler(handler)


def test_backend_name_rules():
    assert backends.backend_name() == "eager"
    assert backends.backend_name(None, True) == "onnxruntime-int8"
    assert backends.backend_name("onnxruntime", False) == "onnxruntime"
    assert backends.backend_name("onnxruntime-int8") == "onnxruntime-int8"


def test_a_stamped_cpp_build_is_imported_without_the_build_check(tmp_path, monkeypatch):
    from reseg.models import gru_ext

    ext = gru_ext.load()
    if ext is None:
        pytest.skip("no C++ compiler/ninja here: nothing is built")
    name, flags = gru_ext._flags()
    shutil.copy(ext.__file__, tmp_path / f"{name}.so")
    stamp = gru_ext._stamp_text(name, flags)
    assert gru_ext._import_built(name, tmp_path, stamp) is None  # no stamp yet: torch's check decides
    (tmp_path / f"{name}.stamp").write_text(stamp)
    loaded = gru_ext._import_built(name, tmp_path, stamp)
    assert loaded is not None and hasattr(loaded, "gru_forward")
    changed = stamp.replace(stamp.split()[1], "0" * 64)  # the source changed since the build
    assert gru_ext._import_built(name, tmp_path, changed) is None


# ---------------------------------------------------------------------------------------------- fixed-size files


def _ops(path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.fixture(scope="module")
def tiny_mingru(tmp_path_factory):
    """(model, config, checkpoint path, cache folder) of a tiny minGRU ReSeg."""
    model, cfg = tiny_model(cell="mingru")
    root = tmp_path_factory.mktemp("mingru")
    path = root / "tiny_mingru.pt"
    save_checkpoint(
        {"config": cfg.to_dict(), "model": model.state_dict(), "class_names": NAMES, "epoch": 1, "iteration": 10}, path
    )
    return model, cfg, path, root / "cache"


def test_a_mingru_model_runs_a_loop_free_file_per_input_shape(tiny_mingru, monkeypatch):
    """Each (batch, padded height, width) gets its own static file (no ONNX Loop) equal to eager; past
    STATIC_SHAPES shapes, new ones run the size-generic file (which needs the Loop)."""
    model, _, _, cache = tiny_mingru
    eager = Predictor(model, num_classes=len(NAMES))
    ort = Predictor(model, num_classes=len(NAMES), backend="onnxruntime", backend_cache=cache)
    gen = torch.Generator().manual_seed(3)
    seen = []
    for n, h, w in ((1, 64, 96), (2, 37, 53), (1, 64, 96)):
        x = torch.randn(n, 3, h, w, generator=gen)
        ref, got = eager.logits(x), ort.logits(x)
        torch.testing.assert_close(got, ref, atol=1e-4 * float(ref.max() - ref.min()), rtol=1e-4)
        path = ort._net.path
        padded = f"{n}x{-(-h // 32) * 32}x{-(-w // 32) * 32}"
        assert path.name.endswith(f"-onnxruntime-static-{padded}.onnx") and "Loop" not in _ops(path)
        seen.append(path)
    assert seen[0] == seen[2] != seen[1]
    monkeypatch.setattr(backends, "STATIC_SHAPES", 2)
    x = torch.randn(1, 3, 32, 32, generator=gen)
    torch.testing.assert_close(ort.logits(x), eager.logits(x), atol=1e-3, rtol=1e-3)
    assert "static" not in ort._net.path.name and "Loop" in _ops(ort._net.path)


def test_the_static_cache_key_names_the_shape_and_a_checkpoint_says_static(tiny_mingru, tiny):
    keys = {
        backends.cache_key("d", "onnxruntime"),
        backends.cache_key("d", "onnxruntime", shape=(1, 64, 96)),
        backends.cache_key("d", "onnxruntime", shape=(2, 64, 96)),
        backends.cache_key("d", "onnxruntime", shape=(1, 96, 64)),
    }
    assert len(keys) == 4 and backends.cache_key("d", "onnxruntime", shape=(2, 64, 96)).endswith("-static-2x64x96")
    assert backends.has_mingru(tiny_mingru[0]) and not backends.has_mingru(tiny[0])
    assert backends.config_has_mingru(tiny_mingru[1].model) and not backends.config_has_mingru(tiny[1].model)
    pred = Predictor.from_checkpoint(tiny_mingru[2], backend="onnxruntime", backend_cache=tiny_mingru[3])
    assert pred._net.static and pred._model is None  # nothing exported or built before the first input


def test_calibration_batches_resize_and_fill_whole_batches():
    inputs = [np.full((1, 3, 8, 12), float(i), dtype=np.float32) for i in range(3)]
    out = backends.calibration_batches(inputs, (2, 16, 24))
    assert [b.shape for b in out] == [(2, 3, 16, 24)] * 2
    assert [float(b[k].mean()) for b in out for k in range(2)] == [0.0, 1.0, 2.0, 0.0]


def test_int8_quantises_renet_projections_and_keeps_the_classes(tiny_mingru):
    """minGRU's input projections (a Gemm per sweep) become QGemm next to the QLinearConvs; the scan and the
    classifier stay fp32, and the masks stay within int8's rounding of fp32's (see the GRU test's reasoning)."""
    model, _, _, cache = tiny_mingru
    fp32 = Predictor(model, size_divisor=16)
    int8 = Predictor(model, size_divisor=16, int8=True, calibration=scenes(8, seed=1), backend_cache=cache)
    test = scenes(4, seed=2)
    agree = np.mean(
        [np.mean(a == b) for a, b in zip(fp32.predict(test, batch_size=4), int8.predict(test, batch_size=4))]
    )
    assert agree >= 0.97, agree
    ops = _ops(int8._net.path)
    assert int8._net.path.name.endswith("-onnxruntime-int8-static-4x48x64.onnx")
    assert ops.count("QGemm") == 4 and "Gemm" not in ops  # 2 layers x 2 sweeps
    assert ops.count("QLinearConv") == sum(isinstance(m, nn.Conv2d) for m in model.modules()) - 1
    assert ops.count("Conv") == 1 and "Sigmoid" in ops and "Loop" not in ops


# ---------------------------------------------------------------------------------------------- auto


def _fake_times(monkeypatch, seconds):
    """auto's timing replaced by fixed seconds per candidate (the nets still run for the mask comparison); eager
    under bf16 is a candidate only when given a time (whatever this machine's CPU)."""
    from reseg import backend_choice, predictor

    monkeypatch.setattr(predictor, "cpu_has_native_bf16", lambda: "eager-bf16" in seconds)

    calls = []

    def fake(nets, x, runs=backend_choice.RUNS, clock=None):
        calls.append(sorted(nets))
        return {name: seconds[name] for name in nets}

    monkeypatch.setattr(backend_choice, "time_nets", fake)
    return calls


def test_the_auto_rule():
    from reseg.backend_choice import pick

    def r(speedup, agreement):
        return {"seconds": 1 / speedup, "speedup": speedup, "agreement": agreement}

    eager = r(1.0, 1.0)
    assert pick({"eager": eager, "onnxruntime": r(1.5, 1.0), "onnxruntime-int8": r(2.5, 0.995)}) == "onnxruntime-int8"
    assert pick({"eager": eager, "onnxruntime": r(1.5, 1.0), "onnxruntime-int8": r(2.5, 0.985)}) == "onnxruntime"
    assert pick({"eager": eager, "onnxruntime": r(1.03, 1.0), "onnxruntime-int8": r(0.8, 1.0)}) == "eager"
    assert pick({"eager": eager, "onnxruntime": r(1.2, 1.0), "onnxruntime-int8": {"error": "no data"}}) == "onnxruntime"


def test_auto_measures_once_with_a_clock_and_remembers(tmp_path, monkeypatch):
    """Fake nets advance a fake clock by their cost: the timings, speed-ups and agreements are exact, the
    record is written beside the cache and read back without building anything; another shape or machine
    is measured again."""
    from reseg import backend_choice

    now = [0.0]
    costs = {"eager": 1.0, "onnxruntime": 0.5, "onnxruntime-int8": 0.25}
    ref = torch.arange(2 * 10 * 10, dtype=torch.float32).reshape(1, 2, 10, 10) % 3

    def net(name, flip=0):
        def run(x):
            now[0] += costs[name]
            y = ref.clone()
            if flip:  # the first `flip` pixels take the other class
                y.view(2, -1)[0, :flip] = 10.0
                y.view(2, -1)[1, :flip] = -10.0
            return y

        return run

    candidates = {
        "eager": lambda: net("eager"),
        "onnxruntime": lambda: net("onnxruntime"),
        "onnxruntime-int8": lambda: net("onnxruntime-int8", flip=1),
    }
    x = torch.zeros(1, 3, 10, 10)
    choice, nets = backend_choice.choose(
        "digest", (1, 10, 10), candidates, x, lambda: [x], tmp_path, clock=lambda: now[0]
    )
    mask = ref.argmax(1)
    int8_agreement = 1 - float((mask.view(-1)[:1] != 0).sum()) / 100
    assert choice.backend == "onnxruntime-int8" and set(nets) == set(costs)
    res = choice.results
    assert res["onnxruntime"]["speedup"] == 2.0 and res["onnxruntime-int8"]["speedup"] == 4.0
    assert res["onnxruntime-int8"]["agreement"] == pytest.approx(int8_agreement) and int8_agreement >= 0.99
    assert choice.summary() == (
        f"backend auto -> onnxruntime-int8 (4.00x eager, {100 * int8_agreement:.1f}% "
        f"mask agreement; measured {choice.measured})"
    )
    records = list(tmp_path.glob("auto-*.json"))
    assert len(records) == 1

    def refuse():
        raise AssertionError("built although the choice is stored")

    stored, built = backend_choice.choose("digest", (1, 10, 10), dict.fromkeys(costs, refuse), x, lambda: [x], tmp_path)
    assert stored.cached and stored.backend == "onnxruntime-int8" and built == {}
    assert stored.summary().endswith(f"measured {choice.measured}, cached)")
    assert backend_choice.record_path(tmp_path, "digest", (1, 10, 12)) != records[0]
    assert backend_choice.record_path(tmp_path, "digest", (2, 10, 10)) != records[0]
    monkeypatch.setattr(backend_choice, "cpu_name", lambda: "another CPU")
    assert backend_choice.record_path(tmp_path, "digest", (1, 10, 10)) != records[0]
    # int8 off by 3 pixels of 100 (97% < 99%): the faster int8 is ruled out and the summary says why
    candidates["onnxruntime-int8"] = lambda: net("onnxruntime-int8", flip=5)
    again = backend_choice.choose("digest", (1, 10, 10), candidates, x, lambda: [x], tmp_path, clock=lambda: now[0])[0]
    assert again.backend == "onnxruntime" and "onnxruntime-int8 4.00x but" in again.summary()


def test_a_damaged_record_is_measured_again(tmp_path):
    from reseg import backend_choice

    path = backend_choice.record_path(tmp_path, "digest", (1, 4, 4))
    path.write_text("{not json")
    assert backend_choice.load_choice(path) is None
    path.write_text(
        '{"backend": "tensorrt", "shape": [1, 4, 4], "results": {}, "measured": "x", "machine": {}, "rule": {}}'
    )
    assert backend_choice.load_choice(path) is None


def test_auto_predictor_runs_the_chosen_backend(tiny_mingru, tmp_path, monkeypatch):
    model, _, _, _ = tiny_mingru
    cache = tmp_path / "cache"
    calls = _fake_times(monkeypatch, {"eager": 1.0, "onnxruntime": 0.5, "onnxruntime-int8": 0.8})
    auto = Predictor(
        model,
        num_classes=len(NAMES),
        backend="auto",
        calibration=scenes(4, seed=1),
        backend_cache=cache,
        channels_last=True,
    )
    assert auto.backend == "auto" and auto.backend_choice is None
    images = scenes(2, seed=3)
    masks = auto.predict(images)
    assert calls == [["eager", "onnxruntime", "onnxruntime-int8"]]
    assert auto.backend == "onnxruntime" and not auto.channels_last and "backend=onnxruntime (auto)" in auto.describe()
    assert auto.backend_choice.startswith("backend auto -> onnxruntime (2.00x eager, 100.0% mask agreement")
    assert "static-2x64x64" in auto._net.path.name
    for got, want in zip(masks, Predictor(model).predict(images)):
        assert np.mean(got == want) > 0.999
    # a second run recalls the choice: nothing timed, only the chosen backend built
    built = []
    original = Predictor._onnxruntime_backend
    monkeypatch.setattr(
        Predictor, "_onnxruntime_backend", lambda self, name, *a: built.append(name) or original(self, name, *a)
    )
    again = Predictor(model, num_classes=len(NAMES), backend="auto", calibration=scenes(4, seed=1), backend_cache=cache)
    again.predict(images)
    assert len(calls) == 1 and built == ["onnxruntime"] and again.backend_choice.endswith(", cached)")
    # eager wins when nothing is faster by the margin; eager-only options then stay on
    _fake_times(monkeypatch, {"eager": 1.0, "onnxruntime": 0.99, "onnxruntime-int8": 0.98})
    slow = Predictor(
        model,
        num_classes=len(NAMES),
        backend="auto",
        calibration=scenes(4, seed=1),
        backend_cache=cache,
        channels_last=True,
    )
    slow.predict(images[:1])
    assert slow.backend == "eager" and slow.channels_last and slow.backend_choice.startswith("backend auto -> eager")


def test_auto_weighs_eager_under_bf16_on_cpus_that_run_it_natively(tiny_mingru, tmp_path, monkeypatch):
    """On a CPU with native bf16, auto also times eager under bf16 autocast with channels-last weights (a copy:
    eager's own timing is left as asked); chosen, the predictor runs eager with those options, and a second
    run builds only that."""
    from reseg import backend_choice

    model, _, _, _ = tiny_mingru
    cache = tmp_path / "cache"
    monkeypatch.setattr(backend_choice, "masks_agreement", lambda net, reference, inputs: 0.995)
    calls = _fake_times(monkeypatch, {"eager": 1.0, "onnxruntime": 0.9, "onnxruntime-int8": 0.8, "eager-bf16": 0.5})
    layout = [(p.data_ptr(), p.stride()) for p in model.parameters()]
    auto = Predictor(model, num_classes=len(NAMES), backend="auto", calibration=scenes(4, seed=1), backend_cache=cache)
    images = scenes(2, seed=3)
    masks = auto.predict(images)
    assert calls == [["eager", "eager-bf16", "onnxruntime", "onnxruntime-int8"]]
    assert auto.backend_choice.startswith("backend auto -> eager-bf16 (2.00x eager, 99.5% mask agreement")
    assert auto.backend == "eager" and auto.amp_dtype == torch.bfloat16 and auto.channels_last
    assert "backend=eager (auto)" in auto.describe() and "amp=bfloat16 channels_last" in auto.describe()
    convs = [p for p in auto._net.parameters() if p.dim() == 4]  # what runs: a copy, channels-last
    assert auto.model is model and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert [(p.data_ptr(), p.stride()) for p in model.parameters()] == layout  # the caller's model is untouched
    for got, want in zip(masks, Predictor(model).predict(images)):
        assert np.mean(got == want) > 0.9
    again = Predictor(model, num_classes=len(NAMES), backend="auto", calibration=scenes(4, seed=1), backend_cache=cache)
    again.predict(images)
    assert len(calls) == 1 and again.amp_dtype == torch.bfloat16 and again.backend_choice.endswith(", cached)")
    # asked for autocast already, or on a CPU without native bf16: not a candidate
    explicit = Predictor(
        model,
        num_classes=len(NAMES),
        backend="auto",
        calibration=scenes(4, seed=1),
        amp="bf16",
        backend_cache=tmp_path / "other",
    )
    explicit.predict(images[:1])
    assert calls[-1] == ["eager", "onnxruntime", "onnxruntime-int8"]


def test_auto_on_the_command_line_prints_its_choice(tiny_mingru, tmp_path, monkeypatch, capsys):
    from reseg.cli import main

    _, _, ckpt, _ = tiny_mingru
    monkeypatch.setenv("RESEG_CACHE_DIR", str(tmp_path / "cache"))
    _fake_times(monkeypatch, {"eager": 1.0, "onnxruntime": 0.4, "onnxruntime-int8": 0.2})
    folder = tmp_path / "in"
    folder.mkdir()
    for i, im in enumerate(scenes(2, seed=9)):
        cv2.imwrite(str(folder / f"{i}.png"), im[..., ::-1])
    # the checkpoint's training split does not exist here: int8 is out, named in the summary
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(ckpt),
                str(folder),
                "--backend",
                "auto",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "backend auto -> onnxruntime (2.50x eager" in out and "onnxruntime-int8 unavailable: " in out
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(ckpt),
                str(folder),
                "--backend",
                "auto",
                "--int8",
                "--out",
                str(tmp_path / "out2"),
            ]
        )
        == 2
    )
    assert "--backend auto chooses" in capsys.readouterr().err


def test_int8_calibration_sizes_images_as_inference_does():
    from reseg.backends import calibration_inputs
    from reseg.preprocess import run_size

    image = np.zeros((128, 256, 3), np.uint8)
    (capped,) = calibration_inputs([image], size_divisor=0, max_pixels=64 * 64)
    assert capped.shape[-2:] == run_size(128, 256, None, 64 * 64) == (45, 91)
    (fixed,) = calibration_inputs([image], size_divisor=0, infer_size=(32, 48), max_pixels=64 * 64)
    assert fixed.shape[-2:] == (32, 48)
    (small,) = calibration_inputs([image[:40, :60]], size_divisor=0, max_pixels=64 * 64)
    assert small.shape[-2:] == (40, 60)
