"""The `reseg` entry point: fast --help, one --set syntax, --debug, one-line errors, predict's output guards."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from reseg.cli import COMMANDS, main
from reseg.data.base import collect_images
from reseg.errors import ResegError
from reseg.preprocess import same_size_batches

ROOT = Path(__file__).resolve().parents[1]

# Runs `reseg <command> --help` and reports which heavy libraries were imported while answering.
HELP_PROBE = """
import sys
from reseg.cli import main
try:
    main([sys.argv[1], "--help"])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "cv2", "albumentations", "onnxruntime", "matplotlib") if m in sys.modules)
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_imports_no_heavy_library(command: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, command], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert f"reseg {command}" in proc.stdout and "--debug" in proc.stdout
    heavy = proc.stderr.strip().splitlines()[-1]
    assert heavy == "HEAVY:", f"`reseg {command} --help` imports {heavy[6:]} before parsing"


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    importlib.import_module(f"reseg.commands.{COMMANDS[command][0]}").add_arguments(parser)
    return parser


SET_COMMANDS = {"train": ["cfg.yaml"], "evaluate": ["--checkpoint", "x.pt"], "browse": [], "data-stats": []}


@pytest.mark.parametrize("command", sorted(SET_COMMANDS))
def test_set_takes_several_pairs_and_repeats(command: str) -> None:
    args = _parser(command).parse_args(SET_COMMANDS[command] + ["--set", "a=1", "b=2", "--set", "c=3"])
    assert args.overrides == ["a=1", "b=2", "c=3"]
    assert _parser(command).parse_args(SET_COMMANDS[command]).overrides == []


def _boom(args: argparse.Namespace) -> int:
    raise RuntimeError("something broke\nsecond line")


def test_unexpected_error_is_one_line_with_a_debug_hint(monkeypatch, capsys) -> None:
    monkeypatch.delenv("RESEG_DEBUG", raising=False)
    monkeypatch.setattr(importlib.import_module("reseg.commands.browse"), "run", _boom)
    assert main(["browse"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0] == "reseg browse: unexpected error: RuntimeError: something broke"
    assert "--debug" in lines[1] and "RESEG_DEBUG=1" in lines[1] and len(lines) == 2


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(monkeypatch, capsys, how: str) -> None:
    monkeypatch.setattr(importlib.import_module("reseg.commands.data_stats"), "run", _boom)
    if how == "env":
        monkeypatch.setenv("RESEG_DEBUG", "1")
        argv = ["data-stats"]
    else:
        monkeypatch.delenv("RESEG_DEBUG", raising=False)
        argv = ["data-stats", "--debug"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "_boom" in err and "unexpected error: RuntimeError" in err


def test_user_errors_stay_short(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.delenv("RESEG_DEBUG", raising=False)
    assert main(["data-stats", "--set", "data.num_workers=-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config key 'data.num_workers'") and "Traceback" not in err


# ---------------------------------------------------------------- predict's inputs and outputs


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((4, 6, 3), value, np.uint8))
    return path


def test_same_stem_in_two_folders_keeps_both(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "x.png", 1)
    _png(tmp_path / "b" / "x.png", 2)
    _png(tmp_path / "b" / "x.jpg", 3)
    items = collect_images([str(tmp_path / "*" / "x.*")])
    names = [str(name) for _, name in items]
    assert len(set(names)) == 3 and names[0] == "a/x" and set(names[1:]) == {"b/x", "b/x_2"}
    twice = collect_images([str(tmp_path / "a" / "x.png"), str(tmp_path / "a" / "x.png")])
    assert [str(n) for _, n in twice] == ["x", "x_2"]


def _predict(tmp_path: Path, *args: str) -> list[str]:
    return ["predict", *args, "--checkpoint", str(tmp_path / "missing.pt")]


@pytest.mark.parametrize("where", ["same", "inside"])
def test_predict_refuses_out_inside_an_input_folder(tmp_path: Path, capsys, where: str) -> None:
    folder = tmp_path / "images"
    _png(folder / "a.png")
    out = folder if where == "same" else folder / "preds"
    before = sorted(p.name for p in folder.rglob("*"))
    assert main(_predict(tmp_path, str(folder), "--out", str(out))) == 2
    err = capsys.readouterr().err
    assert str(out) in err and str(folder) in err
    assert sorted(p.name for p in folder.rglob("*")) == before  # nothing written, nothing created


def test_predict_refuses_out_inside_a_glob_folder(tmp_path: Path, capsys) -> None:
    _png(tmp_path / "images" / "a.png")
    out = tmp_path / "images" / "preds"
    assert main(_predict(tmp_path, str(tmp_path / "images" / "*.png"), "--out", str(out))) == 2
    assert str(out) in capsys.readouterr().err and not out.exists()


def test_predict_refuses_to_overwrite_an_input_file(tmp_path: Path, capsys) -> None:
    image = _png(tmp_path / "a.png")
    assert main(_predict(tmp_path, str(image), "--out", str(tmp_path))) == 2
    err = capsys.readouterr().err
    assert "would overwrite the input image" in err and str(image) in err


def test_predict_refuses_an_out_that_is_a_file(tmp_path: Path, capsys) -> None:
    image = _png(tmp_path / "in" / "a.png")
    blocker = tmp_path / "taken.txt"
    blocker.write_text("mine")
    assert main(_predict(tmp_path, str(image), "--out", str(blocker))) == 2
    assert "existing file" in capsys.readouterr().err and blocker.read_text() == "mine"


def test_predict_refuses_an_unwritable_out(tmp_path: Path, capsys, monkeypatch) -> None:
    import reseg.io

    image = _png(tmp_path / "in" / "a.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    # root may write anywhere, so the permission answer is patched rather than made with chmod
    monkeypatch.setattr(reseg.io.os, "access", lambda path, mode: Path(path) != locked)
    assert main(_predict(tmp_path, str(image), "--out", str(locked / "out"))) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and str(locked) in err and not (locked / "out").exists()


def test_same_size_batches_splits_on_size_and_count() -> None:
    items = [(1, "a"), (1, "b"), (1, "c"), (2, "d"), (1, "e")]
    got = [[x[1] for x in chunk] for chunk in same_size_batches(items, 2, lambda x: x[0])]
    assert got == [["a", "b"], ["c"], ["d"], ["e"]]
    with pytest.raises(ResegError, match=">= 1"):
        list(same_size_batches(items, 0, lambda x: x[0]))


class _ThresholdPredictor:
    """Stands in for a Predictor: class 1 where the red channel is bright, and records its batches."""

    palette = [(0, 0, 0), (255, 0, 0)]

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict(self, images: list[np.ndarray], batch_size: int = 1) -> list[np.ndarray]:
        self.batches.append(len(images))
        return [(im[..., 0] > 127).astype(np.uint8) for im in images]

    def run_size(self, h: int, w: int) -> tuple[int, int]:
        return h, w  # every image runs at its own size


def test_predict_files_keeps_relative_names_and_skips_damaged(tmp_path: Path, capsys) -> None:
    from reseg.mask_files import predict_files

    _png(tmp_path / "in" / "a" / "x.png", 200)
    _png(tmp_path / "in" / "b" / "x.png", 10)
    _png(tmp_path / "in" / "b" / "y.png", 200)
    (tmp_path / "in" / "b" / "z.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    items = collect_images([str(tmp_path / "in" / "*" / "*.png")])
    fake = _ThresholdPredictor()
    old = os.umask(0o022)
    try:
        result = predict_files(fake, items, tmp_path / "out", batch=2, overlay_ext="png", progress=False)
    finally:
        os.umask(old)
    assert result.written == 3 and result.skipped == [str(tmp_path / "in" / "b" / "z.png")]
    assert "z.png" in capsys.readouterr().err and fake.batches == [2, 1]
    out = tmp_path / "out"
    for name, value in (("a/x", 1), ("b/x", 0), ("b/y", 1)):
        mask = cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (4, 6) and (mask == value).all()
        color = cv2.imread(str(out / f"{name}_color.png"))
        assert (color[..., 2] == 255 * value).all()  # BGR on disk: red last
        assert (out / f"{name}_overlay.png").stat().st_mode & 0o777 == 0o644
    assert not any(".partial" in p.name for p in out.rglob("*"))


# ---------------------------------------------------------------- warnings

WARN_PROBE = """
import sys, warnings
import reseg.commands.browse as browse
import reseg.runtime
from reseg.cli import main

def run(args):
    # as reseg.runtime.amp_dtype warns, and as a third-party library would
    warnings.warn_explicit("amp: this CPU has no native bf16 support; running in float32", UserWarning,
                           reseg.runtime.__file__, 68)
    warnings.warn_explicit("something deprecated", DeprecationWarning, "/elsewhere/lib.py", 3)
    return 0

browse.run = run
warnings.simplefilter("always")
main(["browse"])
print("--after--", file=sys.stderr)
warnings.warn_explicit("after the command", UserWarning, reseg.runtime.__file__, 68)
"""


def test_reseg_warnings_are_one_plain_line_while_a_command_runs() -> None:
    proc = subprocess.run([sys.executable, "-c", WARN_PROBE], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    during, after = proc.stderr.split("--after--\n")
    lines = during.splitlines()
    assert lines[0] == "warning: amp: this CPU has no native bf16 support; running in float32"
    assert "/elsewhere/lib.py:3: DeprecationWarning: something deprecated" in lines[1]  # others keep theirs
    assert len(lines) == 2
    assert "runtime.py:68: UserWarning: after the command" in after  # not installed globally
