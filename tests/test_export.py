"""Export: ONNX (onnxruntime) and TorchScript outputs match PyTorch at sizes other than the traced one,
for both decoders; --static, the tolerance, and the input spec in the export report."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from reseg.cli import main
from reseg.config import load_config
from reseg.engine.checkpoint import save_checkpoint
from reseg.export import export_torchscript, verify_torchscript
from reseg.models import ReNet, build_model
from reseg.onnx.export import export_onnx, verify_onnx
from reseg.onnx.trace import ExportError, ExportWrapper, second_size

needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None,
    reason="onnxruntime is not installed (the TorchScript tests still run)",
)

TINY = ["model.renet_hidden=4", "model.decoder_filters=[4, 4]", "model.encoder_weights=null"]
SKIP = ["model.decoder=skip", "model.decoder_channels=[8, 8]", "model.encoder_width=0.25"]
NAMES = ["road", "car", "sky"]


def _model(extra: list[str] = ()) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(load_config(None, TINY + list(extra)), 3).eval()


def _checkpoint(tmp_path, extra: list[str] = ()):
    cfg = load_config(None, TINY + list(extra))
    torch.manual_seed(0)
    model = build_model(cfg, 3)
    ckpt = tmp_path / "ckpt.pth"
    save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "class_names": NAMES}, ckpt)
    return ckpt


def _ort_logits(path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": x.numpy()})[0]


IBN = ["model.encoder=vgg16_bn", "model.ibn_blocks=2", *SKIP]  # half-instance norms export as InstanceNormalization


@needs_ort
@pytest.mark.parametrize("extra", [[], ["model.cell=lstm", "model.renet_patch=2"], SKIP, IBN])
def test_onnx_matches_pytorch_at_other_sizes(tmp_path, extra) -> None:
    model = _model(extra)
    res = export_onnx(model, tmp_path / "m.onnx", size=(32, 48))
    assert res["dynamic"] and [c["size"] for c in res["checks"]][0] == [32, 48]
    second = res["checks"][1]
    assert second["size"][0] != 32 and second["size"][1] != 48 and second["batch"] == 2  # a real second size
    assert res["max_abs_diff"] < 1e-4
    for size in ((40, 56), (37, 53)):  # a multiple of the stride and a ragged one, checked independently
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            ref = model(x).numpy()
        got = _ort_logits(tmp_path / "m.onnx", x)
        assert got.shape == (2, 3, *size)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert all(m.impl == "auto" for m in model.modules() if isinstance(m, ReNet))  # export left it as it was


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("extra", [[], SKIP])
def test_torchscript_matches_pytorch_at_other_sizes(tmp_path, extra) -> None:
    model = _model(extra)
    res = export_torchscript(model, tmp_path / "m.pt", size=(32, 48))
    assert [c["size"] for c in res["checks"]][0] == [32, 48] and len(res["checks"]) == 2
    assert res["max_abs_diff"] < 1e-4
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    for size in ((40, 56), (37, 53)):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), atol=1e-4, rtol=0)
        assert verify_torchscript(tmp_path / "m.pt", model, size, batch=2)["max_abs_diff"] < 1e-4


@needs_ort
def test_static_onnx_accepts_only_the_traced_size(tmp_path) -> None:
    model = _model()
    res = export_onnx(model, tmp_path / "s.onnx", size=(32, 48), dynamic=False)
    assert not res["dynamic"] and [c["size"] for c in res["checks"]] == [[32, 48]]
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        np.testing.assert_allclose(_ort_logits(tmp_path / "s.onnx", x), model(x).numpy(), atol=1e-4, rtol=0)
    with pytest.raises(Exception, match="(?i)invalid dimensions"):  # onnxruntime's own error type
        _ort_logits(tmp_path / "s.onnx", torch.randn(1, 3, 40, 56))
    with pytest.raises(ExportError, match="40x56"):
        verify_onnx(tmp_path / "s.onnx", model, (40, 56))


@needs_ort
def test_a_static_file_is_traced_and_checked_at_its_own_batch_and_size(tmp_path, monkeypatch) -> None:
    """A static export at batch 2 (what a fixed-size backend file is) accepts 2x3xHxW only and is checked there
    once, on an input other than the traced one (the check's input is seed 0, the trace's seed 1)."""
    import reseg.onnx.export as onnx_export
    from reseg.models.renet import static_export

    model = _model(["model.cell=mingru"])
    checked = []
    verify = onnx_export.verify_onnx
    monkeypatch.setattr(
        onnx_export,
        "verify_onnx",
        lambda path, m, size, batch=1: checked.append((list(size), batch)) or verify(path, m, size, batch),
    )
    with static_export():
        res = export_onnx(model, tmp_path / "s2.onnx", size=(32, 48), dynamic=False, batch=2)
    assert checked == [([32, 48], 2)] and [(c["size"], c["batch"]) for c in res["checks"]] == [([32, 48], 2)]
    assert res["trace_batch"] == 2 and not res["dynamic"]
    from reseg.onnx.trace import reference, trace_input

    assert not torch.equal(trace_input((32, 48), 2), reference(model, (32, 48), 2)[0])
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        np.testing.assert_allclose(_ort_logits(tmp_path / "s2.onnx", x), model(x).numpy(), atol=1e-4, rtol=0)
    with pytest.raises(Exception, match="(?i)invalid dimensions"):  # onnxruntime's own error type
        _ort_logits(tmp_path / "s2.onnx", torch.randn(1, 3, 32, 48))
    with pytest.raises(ExportError, match="the export batch must be >= 1"):
        export_onnx(model, tmp_path / "s0.onnx", size=(32, 48), dynamic=False, batch=0)


@needs_ort
@pytest.mark.parametrize(
    "fmt, name, static", [("onnx", "m.onnx", False), ("onnx", "s.onnx", True), ("torchscript", "m.pt", False)]
)
def test_export_command_report(tmp_path, capsys, fmt, name, static) -> None:
    ckpt = _checkpoint(tmp_path, SKIP)
    report = tmp_path / f"{fmt}.json"
    rc = main(
        [
            "export",
            "--checkpoint",
            str(ckpt),
            "--format",
            fmt,
            "--out",
            str(tmp_path / name),
            "--size",
            "32",
            "48",
            "--json",
            str(report),
        ]
        + (["--static"] if static else [])
    )
    assert rc == 0
    res = json.loads(report.read_text())
    assert (tmp_path / name).is_file() and res["path"] == str(tmp_path / name)
    assert res["dynamic"] is not static
    sizes = [c["size"] for c in res["checks"]]
    assert sizes == ([[32, 48]] if static else [[32, 48], list(second_size((32, 48), 4))])
    for c in res["checks"]:
        assert c["max_abs_diff"] <= c["allowed_abs_diff"] == pytest.approx(1e-4 * c["logit_range"])
    # the input normalisation as the training transforms define it (ImageNet statistics on the 0..255 scale)
    assert res["input"]["mean"] == pytest.approx([0.485 * 255, 0.456 * 255, 0.406 * 255], abs=1e-3)
    assert res["input"]["std"] == pytest.approx([0.229 * 255, 0.224 * 255, 0.225 * 255], abs=1e-3)
    assert res["input"]["layout"] == "NCHW" and res["input"]["channels"] == "RGB"
    assert res["class_names"] == NAMES and res["num_classes"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ckpt.pth", name, report.name])  # no temp files
    out = capsys.readouterr().out
    assert "max abs diff" in out and ("only this size" in out) == static


@needs_ort
@pytest.mark.parametrize("static", [False, True])
def test_export_command_records_mingru_sweeps_unrolled_only_in_a_static_file(tmp_path, static) -> None:
    """`reseg export --static` of a minGRU checkpoint holds no ONNX Loop (the fixed size lets the sweeps unroll);
    a size-generic file keeps the Loop that every size needs."""
    import onnx

    ckpt = _checkpoint(tmp_path, SKIP + ["model.cell=mingru"])
    out = tmp_path / "m.onnx"
    assert (
        main(
            ["export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(out), "--size", "32", "48"]
            + (["--static"] if static else [])
        )
        == 0
    )
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert ("Loop" in ops) is not static


@needs_ort
@pytest.mark.parametrize("fmt, name", [("onnx", "m.onnx"), ("torchscript", "m.pt")])
def test_export_above_tolerance_fails_and_says_by_how_much(tmp_path, capsys, monkeypatch, fmt, name) -> None:
    """An exported graph that is off by 0.05 everywhere fails at the default tolerance, names the difference
    and leaves no file; a --tolerance that allows it lets the export through."""
    ckpt = _checkpoint(tmp_path)
    original = ExportWrapper.forward
    monkeypatch.setattr(ExportWrapper, "forward", lambda self, x: original(self, x) + 0.05)
    args = ["export", "--checkpoint", str(ckpt), "--format", fmt, "--out", str(tmp_path / name), "--size", "32", "48"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "differs from PyTorch by 0.05" in err and "x the allowed" in err and "--tolerance" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]  # nothing written, no temporary left

    assert main(args + ["--tolerance", "10", "--json", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["tolerance"] == 10 and res["max_abs_diff"] == pytest.approx(0.05, abs=1e-4)
    assert all(c["allowed_abs_diff"] == pytest.approx(10 * c["logit_range"]) for c in res["checks"])


def test_export_rejects_a_bad_tolerance(tmp_path, capsys) -> None:
    ckpt = _checkpoint(tmp_path)
    rc = main(
        [
            "export",
            "--checkpoint",
            str(ckpt),
            "--format",
            "torchscript",
            "--out",
            str(tmp_path / "m.pt"),
            "--tolerance",
            "0",
        ]
    )
    assert rc == 2 and "--tolerance" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_export_bad_checkpoint_is_a_clear_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    rc = main(["export", "--checkpoint", str(bad), "--format", "torchscript", "--out", str(tmp_path / "m.pt")])
    assert rc == 2 and "bad.pth" in capsys.readouterr().err
