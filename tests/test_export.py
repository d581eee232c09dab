"""Export: ONNX (onnxruntime) and TorchScript outputs match PyTorch at sizes other than the traced one."""

from __future__ import annotations

import json

import pytest
import torch

from reseg.cli import main
from reseg.config import load_config
from reseg.engine.checkpoint import save_checkpoint
from reseg.export import export_onnx, export_torchscript, verify_onnx, verify_torchscript
from reseg.models import ReNet, build_model

pytest.importorskip("onnxruntime")

TINY = ["model.renet_hidden=4", "model.decoder_filters=[4, 4]", "model.encoder_weights=null"]


def _model(extra: list[str] = ()) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(load_config(None, TINY + list(extra)), 3).eval()


@pytest.mark.parametrize("extra", [[], ["model.cell=lstm", "model.renet_patch=2"]])
def test_onnx_matches_pytorch_at_other_sizes(tmp_path, extra) -> None:
    model = _model(extra)
    res = export_onnx(model, tmp_path / "m.onnx", size=(32, 48))
    assert res["check_size"] != [32, 48] and res["max_abs_diff"] < 1e-4
    for size in ((40, 56), (37, 53)):  # a multiple of the stride and a ragged one
        assert verify_onnx(tmp_path / "m.onnx", model, size, batch=2)["max_abs_diff"] < 1e-4
    assert all(m.impl == "auto" for m in model.modules() if isinstance(m, ReNet))  # export left it as it was


def test_torchscript_matches_pytorch_at_other_sizes(tmp_path) -> None:
    model = _model()
    res = export_torchscript(model, tmp_path / "m.pt", size=(32, 48))
    assert res["max_abs_diff"] < 1e-4
    for size in ((40, 56), (37, 53)):
        assert verify_torchscript(tmp_path / "m.pt", model, size, batch=2)["max_abs_diff"] < 1e-4


def test_export_command_from_checkpoint(tmp_path, capsys) -> None:
    cfg = load_config(None, TINY)
    torch.manual_seed(0)
    model = build_model(cfg, 3)
    ckpt = tmp_path / "ckpt.pth"
    save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "class_names": ["a", "b", "c"]}, ckpt)
    for fmt, name in (("onnx", "m.onnx"), ("torchscript", "m.pt")):
        report = tmp_path / f"{fmt}.json"
        rc = main(["export", "--checkpoint", str(ckpt), "--format", fmt, "--out", str(tmp_path / name),
                   "--dynamic", "--size", "32", "48", "--json", str(report)])
        assert rc == 0
        assert (tmp_path / name).is_file()
        assert json.loads(report.read_text())["max_abs_diff"] < 1e-4
    assert "max abs diff" in capsys.readouterr().out


def test_export_bad_checkpoint_is_a_clear_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    rc = main(["export", "--checkpoint", str(bad), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert rc == 2 and "bad.pth" in capsys.readouterr().err
