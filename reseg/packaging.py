"""`reseg package` / reseg.package: write the model folder (reseg.model_folder) of a checkpoint, atomically,
and optionally push it to the Hugging Face Hub."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from reseg.errors import ResegError
from reseg.model_folder import CARD, CLASSES, CONFIG, CONFIG_SECTIONS, FILES, WEIGHTS, read_model_folder


def package(
    checkpoint: str | Path,
    out: str | Path,
    metrics: str | Path | None = None,
    push: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the model folder of a checkpoint (or of another model folder / hf:// source) to `out`.

    The folder is built beside `out` and renamed into place, so `out` is never half written; an existing
    non-empty `out` is replaced only with `overwrite`. `metrics` (a `reseg evaluate` metrics.json) puts the
    scores in the model card; `push` ("user/repo") then uploads the folder to the Hugging Face Hub."""
    from reseg.config import Config
    from reseg.engine.checkpoint import CheckpointError, read_model_source
    from reseg.viz import resolve_palette

    out = Path(out)
    _check_out(out, checkpoint, overwrite)
    weights, info = read_model_source(checkpoint)
    names = [str(n) for n in info["class_names"]]
    try:
        cfg = Config.from_dict(info["config"])
    except ResegError as err:
        raise CheckpointError(f"checkpoint {checkpoint} holds a config this version cannot read: {err}") from None
    scores = _read_metrics(metrics, names) if metrics else None
    palette = [list(c) for c in resolve_palette(names, info.get("palette"))]
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_folder(tmp, weights, cfg, names, palette, info, scores, source=checkpoint)
        read_model_folder(tmp)  # what we hand out must load
        from reseg.io import replace_dir

        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if push:
        from reseg.hub import push as push_to_hub

        push_to_hub(out, push)
    return out


def _check_out(out: Path, source: str | Path, overwrite: bool) -> None:
    from reseg.io import check_output_dir

    check_output_dir(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ResegError(f"--out {out} exists and is not empty; choose a new folder or pass --overwrite to replace it")
    src = Path(source).resolve()
    if out.resolve() == src or out.resolve() in src.parents:
        raise ResegError(f"--out {out} holds the checkpoint {source} it would be made from; choose another folder")


def _read_metrics(path: str | Path, names: list[str]) -> dict[str, Any]:
    from reseg.report import load_metrics_json

    scores = load_metrics_json(path)
    scored = list(scores.get("class_names") or scores["per_class"])
    if scored != names:
        raise ResegError(
            f"--metrics {path} scores the classes {scored[:6]}{'...' if len(scored) > 6 else ''}, "
            f"but the model has {names[:6]}{'...' if len(names) > 6 else ''}; pass the metrics.json "
            f"that `reseg evaluate` wrote for this checkpoint"
        )
    return scores


def _write_folder(
    folder: Path,
    weights: dict[str, Any],
    cfg: Any,
    names: list[str],
    palette: list[list[int]],
    info: dict[str, Any],
    scores: dict[str, Any] | None,
    source: str | Path,
) -> None:
    from safetensors.torch import save_file

    from reseg import __version__
    from reseg.engine.checkpoint import strip_wrapper_prefix
    from reseg.model_card import model_card

    # safetensors refuses tensors that share memory; a copy of each keeps the file independent of the model
    tensors = {strip_wrapper_prefix(k): v.detach().to("cpu").contiguous().clone() for k, v in weights.items()}
    save_file(
        tensors, str(folder / WEIGHTS), metadata={"format": "pt", "library": "reseg", "reseg_version": __version__}
    )
    cfg.model.num_classes = len(names)
    cfg.model.encoder_weights = None  # the weights are here: loading never downloads
    cfg.model.sync_bn = False
    sections = {k: v for k, v in cfg.to_dict().items() if k in CONFIG_SECTIONS}
    header = (
        "# reseg model config: model.* rebuilds the network, data.* is what it was trained on and how images\n"
        "# are preprocessed (size_divisor, eval_size), eval.* how it infers. Load with reseg.load(<folder>).\n"
    )
    (folder / CONFIG).write_text(header + yaml.safe_dump(sections, sort_keys=False), encoding="utf-8")
    ignore_index = int(info.get("ignore_index", cfg.loss.ignore_index))
    classes = {"names": names, "palette": palette, "ignore_index": ignore_index}
    (folder / CLASSES).write_text(json.dumps(classes, indent=2) + "\n", encoding="utf-8")
    n_params = sum(int(t.numel()) for t in tensors.values())
    card = model_card(cfg, names, palette, ignore_index, info, scores, source=source, parameters=n_params)
    (folder / CARD).write_text(card, encoding="utf-8")
    for name in FILES:  # the rename into place is atomic only for data already on the disk
        with contextlib.suppress(OSError), open(folder / name, "rb") as fh:
            os.fsync(fh.fileno())
