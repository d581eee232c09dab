"""Models: inference and training-step throughput with peak memory, and ReNet's share of ReSeg's time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reseg.benchmark.timing import BenchOptions, PeakMemory, time_fn, time_interleaved
from reseg.benchmark.train_step import random_batch, step_trainer, train_step_fn
from reseg.config import Config, load_config


def bench_config(name: str, num_classes: int = 11, overrides: Sequence[str] = ()) -> Config:
    """The config of a benchmark model variant (`reseg_trainable` = ReSeg, encoder trained; `reseg_skip` = the
    same with the skip decoder; `reseg_mingru` = `reseg` with the minGRU cell), without pretrained weights."""
    opts = list(overrides)
    if name == "reseg":
        opts += ["model.name=reseg", "model.freeze_encoder=true"]
    elif name == "reseg_trainable":
        opts += ["model.name=reseg", "model.freeze_encoder=false"]
    elif name == "reseg_mingru":  # reseg with the minGRU cell: the ReNet cell is the only difference
        opts += ["model.name=reseg", "model.freeze_encoder=true", "model.cell=mingru"]
    elif name == "reseg_skip":  # reseg_trainable with the skip decoder: the decoder is the only difference
        opts += ["model.name=reseg", "model.freeze_encoder=false", "model.decoder=skip"]
    else:
        opts += [f"model.name={name}", "model.freeze_encoder=false"]
    return load_config(None, opts + ["model.encoder_weights=null", f"model.num_classes={num_classes}"])


def build_bench_model(name: str, num_classes: int = 11, overrides: Sequence[str] = ()) -> nn.Module:
    """The benchmark's model variants (see bench_config) through the one factory."""
    from reseg.models import build_model

    return build_model(bench_config(name, num_classes, overrides))


def _infer_and_train_step(
    cfg: Config, batch: int, size: tuple[int, int], dev: torch.device
) -> tuple[Callable[[], None], Callable[[], float]]:
    """One inference call and one `reseg train` step (Trainer.train_one_step) of the config's model on a fixed
    random batch; both run the trainer's model."""
    trainer = step_trainer(cfg, dev)
    data = random_batch(trainer, batch, size)
    model = trainer.opt.model_bare
    x = data["image"].contiguous(memory_format=trainer.run.memory_format)

    def infer() -> None:
        model.eval()
        with torch.inference_mode():
            model(x)

    return infer, train_step_fn(trainer, data)


def bench_model(
    cfg: Config,
    batch: int = 4,
    size: tuple[int, int] = (360, 480),
    repeats: int = 3,
    device: str = "cpu",
    train: bool = True,
) -> dict[str, float]:
    """Inference and train-step images/s of the config's model with the peak memory of each."""
    dev = torch.device(device)
    infer, step = _infer_and_train_step(cfg, batch, size, dev)
    res: dict[str, float] = {}
    with PeakMemory(dev) as mem:
        t = time_fn(infer, repeats, 1, dev)
    res["infer_img_s"] = batch / t
    res["infer_peak_mem_mb"] = mem.peak_mb
    if train:
        with PeakMemory(dev) as mem:
            t = time_fn(step, repeats, 1, dev)
        res["train_img_s"] = batch / t
        res["peak_mem_mb"] = mem.peak_mb
    return res


HEAD_TO_HEAD = ("reseg", "reseg_mingru", "unet_vgg16")
# (key prefix, model, the model it is divided by, table label) of the head-to-head ratios
HEAD_TO_HEAD_RATIOS = (
    ("reseg_mingru_vs_gru", "reseg_mingru", "reseg", "ReSeg minGRU vs ReSeg GRU"),
    ("reseg_mingru_vs_unet", "reseg_mingru", "unet_vgg16", "ReSeg minGRU vs Unet-VGG16"),
    ("reseg_vs_unet", "reseg", "unet_vgg16", "ReSeg GRU vs Unet-VGG16"),
)


def bench_head_to_head(o: BenchOptions, names: Sequence[str] = HEAD_TO_HEAD) -> dict[str, Any]:
    """Inference and train-step img/s of a few models timed interleaved, one repeat of each in turn.

    The ratios the minGRU targets are stated in (minGRU vs GRU ReSeg, ReSeg vs U-Net) drift less this way
    on a shared machine than `run_section`'s one model after another."""
    dev = torch.device(o.device)
    fns_infer, fns_train = {}, {}
    for name in names:
        fns_infer[name], fns_train[name] = _infer_and_train_step(bench_config(name), o.batch, o.size, dev)
    t_infer = time_interleaved(fns_infer, o.repeats, 1, dev)
    t_train = time_interleaved(fns_train, o.repeats, 1, dev)
    img_s = {n: {"infer_img_s": o.batch / t_infer[n], "train_img_s": o.batch / t_train[n]} for n in names}
    out: dict[str, Any] = {"interleaved": img_s}
    for tag, a, b, _ in HEAD_TO_HEAD_RATIOS:
        if a in img_s and b in img_s:
            for kind in ("infer", "train"):
                out[f"{tag}_{kind}"] = img_s[a][f"{kind}_img_s"] / img_s[b][f"{kind}_img_s"]
    return out


def bench_renet_share(
    model: nn.Module, batch: int = 4, size: tuple[int, int] = (360, 480), repeats: int = 3, device: str = "cpu"
) -> dict[str, float]:
    """Share of ReSeg's inference time spent in its ReNet layers (timed interleaved with the whole model)."""
    dev = torch.device(device)
    model = model.to(dev).eval()
    x = torch.randn(batch, 3, *size, device=dev)
    with torch.inference_mode():
        feats = model.encoder(x)

        def whole() -> None:
            model(x)

        def renet() -> None:
            model.renet(feats)

        t = time_interleaved({"model": whole, "renet": renet}, repeats, 1, dev)
    return {"model_s": t["model"], "renet_s": t["renet"], "share": t["renet"] / t["model"]}


MODEL_NAMES = ("reseg", "reseg_mingru", "reseg_trainable", "reseg_skip", "unet_vgg16", "fpn_vgg16")
CROP_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "reseg_skip_cityscapes.yaml"
RECIPE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "reseg_skip_camvid_cpu.yaml"


def crop_train_memory(o: BenchOptions, config: Path = CROP_CONFIG) -> dict[str, Any]:
    """Peak memory of one ReSeg-skip training step at the Cityscapes crop size of `config`, batch 1.

    What decides whether the GPU recipe fits (ReNet's backward keeps every hidden state). --quick runs
    an eighth of the crop, so the figure is only a smoke test there."""
    if not config.is_file():
        return {"config": str(config), "skipped": "config file not found"}
    cfg = load_config(config, ["model.encoder_weights=null"])
    cfg.model.num_classes = cfg.model.num_classes or 19
    crop = tuple(cfg.data.crop_size)
    size = (max(8, crop[0] // 8), max(8, crop[1] // 8)) if o.quick else crop
    res = bench_model(cfg, 1, size, 1 if o.quick else 2, o.device)
    return {
        "config": config.name,
        "crop_size": list(crop),
        "size": list(size),
        "batch": 1,
        "config_batch": cfg.data.batch_size,
        "train_peak_mem_mb": res["peak_mem_mb"],
        "infer_peak_mem_mb": res["infer_peak_mem_mb"],
        "train_img_s": res["train_img_s"],
    }


def run_section(o: BenchOptions) -> dict[str, Any]:
    """Each benchmark model's inference and train-step img/s, and ReSeg's ratio to U-Net."""
    models = {name: bench_model(bench_config(name), o.batch, o.size, o.repeats, o.device) for name in MODEL_NAMES}
    return {
        "models": models,
        "reseg_skip_cityscapes_crop": crop_train_memory(o),
        "reseg_vs_unet_infer": models["reseg"]["infer_img_s"] / models["unet_vgg16"]["infer_img_s"],
        "reseg_vs_unet_train": models["reseg"]["train_img_s"] / models["unet_vgg16"]["train_img_s"],
    }


def table_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for name, v in res["models"].items():
        rows.append((f"{name}: infer / train-step img/s", f"{v['infer_img_s']:.2f} / {v['train_img_s']:.2f}"))
        rows.append((f"{name}: peak memory train / infer MB", f"{v['peak_mem_mb']:.0f} / {v['infer_peak_mem_mb']:.0f}"))
    crop = res.get("reseg_skip_cityscapes_crop") or {}
    if "size" in crop:
        rows.append(
            (
                f"reseg_skip: train-step peak memory at {crop['size'][0]}x{crop['size'][1]}, batch 1 "
                f"({crop['config']}) MB",
                f"{crop['train_peak_mem_mb']:.0f}",
            )
        )
    rows.append(
        ("ReSeg vs Unet-VGG16: infer / train", f"{res['reseg_vs_unet_infer']:.2f}x / {res['reseg_vs_unet_train']:.2f}x")
    )
    return rows


def run_head_to_head_section(o: BenchOptions) -> dict[str, Any]:
    """minGRU ReSeg, GRU ReSeg and U-Net timed interleaved: the ratios the minGRU targets are stated in."""
    return {"head_to_head": bench_head_to_head(o)}


def head_to_head_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    h2h = res["head_to_head"]
    rows = [
        (f"{name}, timed interleaved: infer / train-step img/s", f"{v['infer_img_s']:.2f} / {v['train_img_s']:.2f}")
        for name, v in h2h["interleaved"].items()
    ]
    for tag, _, _, label in HEAD_TO_HEAD_RATIOS:
        if f"{tag}_train" in h2h:
            rows.append(
                (
                    f"{label}, timed interleaved: infer / train",
                    f"{h2h[tag + '_infer']:.2f}x / {h2h[tag + '_train']:.2f}x",
                )
            )
    return rows


def bench_bn_fold(o: BenchOptions, config: Path = RECIPE_CONFIG) -> dict[str, Any]:
    """The eager backends' batch-norm folding (reseg.runtime.folded_copy): the CamVid recipe's model at batch 1,
    as `reseg video` runs it, with and without its norms folded, timed interleaved at the config's inference
    size and at --size (--quick: at --size only), in float32 and, where the CPU has native bf16 (or on CUDA),
    under autocast with channels-last weights; with the largest logit difference between the two."""
    from reseg.models import build_model
    from reseg.runtime import autocast, cpu_has_native_bf16, folded_copy, memory_format, place_model

    cfg = load_config(config, ["model.encoder_weights=null"])
    model = build_model(cfg, cfg.model.num_classes or 11).eval()
    dev = torch.device(o.device)
    sizes = [tuple(o.size)] if o.quick else [tuple(cfg.data.eval_size or o.size), tuple(o.size)]
    dtypes: dict[str, torch.dtype | None] = {"fp32": None}
    if dev.type == "cuda" or cpu_has_native_bf16():
        dtypes["bf16"] = torch.bfloat16
    out: dict[str, Any] = {"config": config.name, "runs": []}
    for dtype_name, dtype in dtypes.items():
        fmt = memory_format(channels_last=dtype is not None)
        plain = place_model(model, dev, channels_last=dtype is not None)
        folded = folded_copy(plain)
        for h, w in dict.fromkeys(sizes):
            x = torch.randn(1, 3, h, w, device=dev).contiguous(memory_format=fmt)
            with torch.inference_mode(), autocast(dev, dtype):
                diff = (plain(x).float() - folded(x).float()).abs().max().item()
                fns = {"plain": lambda m=plain, x=x: m(x), "folded": lambda m=folded, x=x: m(x)}
                t = time_interleaved(fns, o.repeats, 1, dev)
            out["runs"].append(
                {
                    "dtype": dtype_name,
                    "size": [h, w],
                    "plain_ms": 1000 * t["plain"],
                    "folded_ms": 1000 * t["folded"],
                    "speedup": t["plain"] / t["folded"],
                    "max_abs_logit_diff": diff,
                }
            )
    return out


def run_bn_fold_section(o: BenchOptions) -> dict[str, Any]:
    """Batch norms folded into the convolutions, as the eager backends run them, against unfolded."""
    return {"bn_fold": bench_bn_fold(o)}


def bn_fold_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    fold = res["bn_fold"]
    return [
        (
            f"{fold['config']} batch 1 {r['size'][0]}x{r['size'][1]} {r['dtype']}: unfolded / folded ms",
            f"{r['plain_ms']:.1f} / {r['folded_ms']:.1f} ({r['speedup']:.2f}x, max logit diff {r['max_abs_logit_diff']:.1e})",
        )
        for r in fold["runs"]
    ]
