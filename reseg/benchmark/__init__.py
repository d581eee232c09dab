"""`reseg benchmark`: speed and memory of ReNet, the models, the data pipeline, the evaluator, inference, video.

One module per section (renet, models: models, head_to_head and bn_fold, pipeline: data and evaluator, predictor, video); each gives `run_*(BenchOptions) -> dict` (merged into the results JSON) and
`*_rows(results) -> [(measure, value)]` (its lines of the markdown table). SECTIONS is the one list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reseg.benchmark import models, pipeline, predictor, renet, video
from reseg.benchmark.timing import BenchOptions, PeakMemory, machine_info, strict_fp32, time_fn, time_interleaved

__all__ = [
    "SECTIONS",
    "BenchOptions",
    "PeakMemory",
    "format_table",
    "machine_info",
    "run_benchmark",
    "strict_fp32",
    "time_fn",
    "time_interleaved",
]

Section = tuple[Callable[[BenchOptions], dict[str, Any]], Callable[[dict[str, Any]], list[tuple[str, str]]]]
SECTIONS: dict[str, Section] = {
    "renet": (renet.run_section, renet.table_rows),
    "models": (models.run_section, models.table_rows),
    "head_to_head": (models.run_head_to_head_section, models.head_to_head_rows),
    "bn_fold": (models.run_bn_fold_section, models.bn_fold_rows),
    "data": (pipeline.run_data_section, pipeline.data_rows),
    "evaluator": (pipeline.run_evaluator_section, pipeline.evaluator_rows),
    "predictor": (predictor.run_predictor_section, predictor.predictor_rows),
    "video": (video.run_video_section, video.video_rows),
}


def run_benchmark(
    o: BenchOptions, sections: list[str] | None = None, log: Callable[[str], None] = lambda msg: None
) -> dict[str, Any]:
    """Run the chosen sections (all by default) and return the results dict (the JSON of --json)."""
    res: dict[str, Any] = {
        "machine": machine_info(o.device),
        "device": o.device,
        "size": list(o.size),
        "batch": o.batch,
        "repeats": o.repeats,
        "quick": o.quick,
        "sections": [],
    }
    t_start = time.perf_counter()
    for name in sections or list(SECTIONS):
        log(f"benchmark: {name} ...")
        res.update(SECTIONS[name][0](o))
        res["sections"].append(name)
    res["wall_s"] = time.perf_counter() - t_start
    return res


def format_table(res: dict[str, Any]) -> str:
    """The results as a markdown table (one measure per row), headed by the machine."""
    m = res["machine"]
    head = (
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads, "
        f"{m['cpu_capability']}{', bf16' if m['bf16'] else ''}"
        + (f", GPU {m['gpu']}" if "gpu" in m else "")
        + f"; device {res['device']}, images {res['size'][0]}x{res['size'][1]}, batch {res['batch']}, "
        f"median of {res['repeats']}" + (" (quick)" if res["quick"] else "")
    )
    lines = [head, "", "| measure | value |", "|---|---|"]
    for name in res["sections"]:
        lines += [f"| {measure} | {value} |" for measure, value in SECTIONS[name][1](res)]
    lines.append(f"| benchmark wall time s | {res['wall_s']:.0f} |")
    return "\n".join(lines)
