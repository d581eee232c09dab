#!/usr/bin/env python3
"""The Python half of tools/gpu_check.sh: the benchmark figures, and the one JSON + markdown report.

python tools/gpu_check.py bench --out DIR [--rehearsal] [--deadline SECONDS]
python tools/gpu_check.py camvid --out DIR --name NAME --work-dir W --eval-dir E --budget 70s
python tools/gpu_check.py report --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reseg.benchmark.gpu import GpuPlan, camvid_summary, gpu_table, run_gpu_bench  # noqa: E402
from reseg.io import write_json, write_text  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="the benchmark figures -> OUT/gpu_bench.json")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--rehearsal", action="store_true", help="CPU, tiny sizes, CUDA-only parts skipped by name")
    b.add_argument(
        "--deadline", type=float, default=None, help="seconds after which the optional torch.compile part is skipped"
    )
    c = sub.add_parser("camvid", help="one CamVid run's scores and iterations -> OUT/camvid_NAME.json")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--name", required=True)
    c.add_argument("--work-dir", type=Path, required=True)
    c.add_argument("--eval-dir", type=Path, required=True)
    c.add_argument("--budget", default=None, help="the training budget the run had")
    r = sub.add_parser("report", help="OUT/gpu_bench.json + OUT/camvid_*.json -> OUT/gpu_check.json and .md")
    r.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.cmd == "bench":
        plan = GpuPlan.rehearsal() if args.rehearsal else GpuPlan()
        if args.deadline is not None:
            plan.deadline = time.monotonic() + args.deadline
        run_gpu_bench(plan, args.out / "gpu_bench.json", log=lambda msg: print(msg, flush=True))
        return 0
    if args.cmd == "camvid":
        write_json(args.out / f"camvid_{args.name}.json", camvid_summary(args.work_dir, args.eval_dir, args.budget))
        return 0
    bench_path = args.out / "gpu_bench.json"
    bench = json.loads(bench_path.read_text()) if bench_path.is_file() else {"error": f"no {bench_path}"}
    camvid = {p.stem[len("camvid_") :]: json.loads(p.read_text()) for p in sorted(args.out.glob("camvid_*.json"))}
    write_json(args.out / "gpu_check.json", {"bench": bench, "camvid": camvid})
    table = gpu_table(bench, camvid)
    write_text(args.out / "gpu_check.md", table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
