"""Builds the C++ GRU step loops (gru_loops.cpp) on first use; None where that is not possible.

A build leaves a stamp (source digest, flags, torch and Python versions) beside the .so; a later start
with a matching stamp imports the .so directly instead of running torch's build check.

The TorchScript loops in renet.py compute the same thing as ~15 ATen passes over memory per time
step; the C++ loop makes each step one pass, which is what bounds the CPU backward. The build
(~30-60 s, once; cached under $TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions) needs a C++
compiler and ninja. Without them, or with RESEG_CPP_LOOPS=0, ReNet quietly keeps the TorchScript loops.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
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


def _write_stamp(path: Path, text: str) -> None:
    try:
        from reseg.io import write_text

        write_text(path, text)
    except OSError:  # a read-only cache still works, through torch's build check
        pass


def enabled() -> bool:
    return os.environ.get("RESEG_CPP_LOOPS", "1").lower() not in ("0", "false", "no", "off")


def build_directory(name: str) -> Path:
    """Our own folder under torch's extension root ($TORCH_EXTENSIONS_DIR, else ~/.cache/torch_extensions),
    per torch version."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or _default_build_root()
    path = Path(root) / f"reseg-torch{torch.__version__}" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _default_build_root() -> str:
    """torch's extension root without importing torch.utils.cpp_extension (0.1 s) when the build is cached."""
    try:
        from torch import _appdirs  # what get_default_build_root() uses

        return os.path.realpath(_appdirs.user_cache_dir(appname="torch_extensions"))
    except (ImportError, AttributeError):
        pass
    from torch.utils.cpp_extension import get_default_build_root

    return get_default_build_root()


def load() -> ModuleType | None:
    """The compiled loops, or None (disabled, no compiler/ninja, or the build failed: logged once)."""
    return _build() if enabled() else None


def _stamp_text(name: str, flags: list[str]) -> str:
    """What a build depends on: the source, the flags, torch and Python; a match means the .so is current."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    return f"{name} {digest} {' '.join(flags)} torch {torch.__version__} python {sys.version.split()[0]}\n"


def _import_built(name: str, folder: Path, stamp: str) -> ModuleType | None:
    """The cached build imported directly when its stamp matches: no ninja run, no compiler probe (that
    check took 0.1-4 s on every start, most of it on a busy machine)."""
    so, stamp_file = folder / f"{name}.so", folder / f"{name}.stamp"
    try:
        if not so.is_file() or stamp_file.read_text() != stamp:
            return None
        spec = importlib.util.spec_from_file_location(name, so)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except (OSError, ImportError):
        return None


@functools.cache
def _build() -> ModuleType | None:
    """One build attempt per process (torch's file lock keeps concurrent processes from building twice)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on CPU builds
    try:
        name, flags = _flags()
        folder = build_directory(name)
        stamp = _stamp_text(name, flags)
        built = _import_built(name, folder, stamp)
        if built is not None:
            return built
        import torch.utils.cpp_extension as cpp_ext

        # Older torch waits forever on the lock file a killed build leaves behind (newer torch holds an
        # OS-level lock that dies with its process, and a leftover file blocks nothing).
        lock = folder / "lock"
        if not hasattr(cpp_ext, "FileLock") and lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            log.warning("removing a stale build lock %s (a build was interrupted)", lock)
            lock.unlink(missing_ok=True)
        if not (folder / f"{name}.so").exists():
            print(
                f"reseg: building the C++ ReNet loops for this machine in {folder} (once, about 30 s; "
                f"RESEG_CPP_LOOPS=0 skips this)",
                file=sys.stderr,
                flush=True,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = cpp_ext.load(name, [str(SOURCE)], extra_cflags=flags, build_directory=str(folder), verbose=False)
        _write_stamp(folder / f"{name}.stamp", stamp)
        return module
    except Exception as err:  # no compiler, no ninja, or a failed build: the TorchScript loops still work
        log.warning(
            "ReNet: C++ GRU loops unavailable (%s: %s); using the TorchScript loops",
            type(err).__name__,
            str(err).splitlines()[0][:200] if str(err) else "",
        )
        return None
