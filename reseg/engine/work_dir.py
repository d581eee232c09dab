"""A run's work dir: a fresh run never replaces an earlier one unasked, and a stopped run says what it kept."""

from __future__ import annotations

import logging
from pathlib import Path

from reseg.engine import distributed as dist_utils
from reseg.engine.logger import setup_logging
from reseg.errors import ResegError
from reseg.io import check_output_dir

LOG = logging.getLogger("reseg.train")

RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")  # a work dir holding one of these holds a run


def check_work_dir(work_dir: Path, resume: bool, overwrite: bool) -> None:
    """A fresh run never silently replaces an earlier one: refuse unless --resume or --overwrite."""
    check_output_dir(work_dir, "--work-dir")
    held = [name for name in RUN_FILES if (work_dir / name).exists()]
    if held and not resume and not overwrite:
        raise ResegError(
            f"{work_dir} already holds a run ({', '.join(held)}); continue it with --resume, "
            f"start again there with --overwrite, or pick another --work-dir"
        )


def _clear_work_dir(work_dir: Path, earlier_run: bool) -> None:
    """Remove what a run killed while saving left behind and, when asked, the earlier run's files."""
    work_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*work_dir.glob(".*.partial.pt"), *work_dir.glob(".*.pt.*.tmp")]:
        stale.unlink(missing_ok=True)
    if earlier_run:
        for name in RUN_FILES:
            (work_dir / name).unlink(missing_ok=True)


def prepare_work_dir(work_dir: Path, main: bool, resume: bool, overwrite: bool) -> None:
    """Rank 0 checks and clears the work dir (a problem stops every rank, not only rank 0); then train.log."""
    problem = None
    if main:
        try:
            check_work_dir(work_dir, resume=resume, overwrite=overwrite)
        except ResegError as err:
            problem = str(err)
    problem = dist_utils.broadcast_object(problem)
    if problem:
        raise ResegError(problem)
    if main:
        _clear_work_dir(work_dir, earlier_run=overwrite and not resume)
    dist_utils.barrier()
    setup_logging(work_dir if main else None)
    if main and overwrite and not resume:
        LOG.info("--overwrite: starting a new run in %s", work_dir)


def kept_message(work_dir: Path, last_saved: int | None) -> str:
    """What a stopped run leaves to continue from, and what to change first."""
    last = work_dir / "last.pt"
    if last_saved is not None and last.exists():
        return (
            f"The last good checkpoint is {last} (iteration {last_saved}); lower optim.lr, set "
            f"optim.grad_clip or check the data, then resume with --resume."
        )
    return "No checkpoint was written yet; lower optim.lr, set optim.grad_clip or check the data."
