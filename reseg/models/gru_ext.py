"""Builds the C++ GRU step loops (gru_loops.cpp) on first use; None where that is not possible.

The TorchScript loops in renet.py compute the same thing as ~15 ATen passes over memory per time
step; the C++ loop makes each step one pass, which is what bounds the CPU backward. The build
(~30-60 s, once; cached under $TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions) needs a C++
compiler and ninja. Without them, or with RESEG_CPP_LOOPS=0, ReNet quietly keeps the TorchScript loops.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

log = logging.getLogger("reseg.models")
SOURCE = Path(__file__).with_name("gru_loops.cpp")
STALE_LOCK_S = 600  # a build takes under a minute


def _flags() -> tuple[str, list[str]]:
    """Name and compiler flags: vector instructions this CPU has, named so caches of other CPUs do not collide."""
    cap = torch.backends.cpu.get_cpu_capability()
    base = ["-O3", "-fno-trapping-math", "-fno-math-errno"]  # without these GCC will not vectorise the gate loops
    if cap.startswith("AVX512"):
        return "reseg_gru_loops_avx512", base + ["-mavx512f", "-mavx512dq", "-mavx2", "-mfma"]
    if cap.startswith("AVX2"):
        return "reseg_gru_loops_avx2", base + ["-mavx2", "-mfma"]
    return "reseg_gru_loops", base


def enabled() -> bool:
    return os.environ.get("RESEG_CPP_LOOPS", "1").lower() not in ("0", "false", "no", "off")


def build_directory(name: str) -> Path:
    """Our own folder under torch's extension root ($TORCH_EXTENSIONS_DIR, else ~/.cache/torch_extensions),
    per torch version."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    path = Path(root) / f"reseg-torch{torch.__version__}" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def load() -> ModuleType | None:
    """The compiled loops, or None (disabled, no compiler/ninja, or the build failed: logged once)."""
    return _build() if enabled() else None


@functools.cache
def _build() -> ModuleType | None:
    """One build attempt per process (torch's file lock keeps concurrent processes from building twice)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on CPU builds
    try:
        import torch.utils.cpp_extension as cpp_ext

        name, flags = _flags()
        folder = build_directory(name)
        # Older torch waits forever on the lock file a killed build leaves behind (newer torch holds an
        # OS-level lock that dies with its process, and a leftover file blocks nothing).
        lock = folder / "lock"
        if not hasattr(cpp_ext, "FileLock") and lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            log.warning("removing a stale build lock %s (a build was interrupted)", lock)
            lock.unlink(missing_ok=True)
        if not (folder / f"{name}.so").exists():
            print(f"reseg: building the C++ ReNet loops for this machine in {folder} (once, about 30 s; "
                  f"RESEG_CPP_LOOPS=0 skips this)", file=sys.stderr, flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cpp_ext.load(name, [str(SOURCE)], extra_cflags=flags, build_directory=str(folder), verbose=False)
    except Exception as err:  # no compiler, no ninja, or a failed build: the TorchScript loops still work
        log.warning("ReNet: C++ GRU loops unavailable (%s: %s); using the TorchScript loops",
                    type(err).__name__, str(err).splitlines()[0][:200] if str(err) else "")
        return None
