"""Writing files safely: every output goes to a temporary name in its folder and is renamed into place,
and no tool writes into a folder it reads from.

Why: a crash, a Ctrl-C or a full disk must leave either the previous file or the new one, never half
of one, and a mistyped `--out` must never overwrite the user's images or labels.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from reseg.errors import ResegError


class DiskFullError(ResegError):
    """The disk filled up while writing; the message names the file and the free space."""


def _free_space(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if free < 1024 or unit == "TiB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return "unknown"


def _temp_name(path: Path) -> Path:
    """A hidden sibling of `path` that keeps its suffix (some writers pick the format from it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _raise_disk_full(err: OSError, path: Path) -> None:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFullError(
            f"no space left on the device while writing {path} "
            f"({_free_space(path.parent)} free); the previous file, if any, is intact"
        ) from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path`, on failure removed.

    For writers that take a file name (matplotlib, OpenCV, PIL, torch.onnx.export). The file gets
    the user's umask like any other file they create.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise ResegError(f"writing {path} failed: the writer produced no file")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _cleanup(tmp)
        _raise_disk_full(err, path)
        raise
    except BaseException:
        _cleanup(tmp)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """`open()` for writing, atomically: readers see the old file or the whole new one."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files; mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as fh:
        yield fh
        fh.flush()


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (UTF-8)."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write JSON atomically, with a trailing newline."""
    return write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def _cleanup(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


def _contains(folder: Path, path: Path) -> bool:
    return path == folder or folder in path.parents


def refuse_overlap(output: str | Path, inputs: Iterable[str | Path], output_flag: str, input_what: str) -> None:
    """Refuse an output that is, or lies inside, one of the inputs (or an input file that would be overwritten).

    `inputs` are files or folders the command reads; the error names both paths, before anything
    is written.
    """
    out = Path(output).resolve()
    for item in inputs:
        src = Path(item).resolve()
        if _contains(src, out) if src.is_dir() else out == src:
            raise ResegError(
                f"{output_flag} {output} would write into {input_what} {item} ({src}); "
                f"choose an output outside what the command reads"
            )


def folder_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as a folder ("does not exist", "is a file, not a folder"), or None if it is one.

    One wording for every "root" a user names, so a typo and a wrong file read differently.
    """
    folder = Path(path)
    if folder.is_dir():
        return None
    if folder.exists():
        return "is a file, not a folder" if folder.is_file() else "is not a folder"
    return "does not exist"


def check_output_dir(path: str | Path, flag: str) -> Path:
    """An output folder must be a folder (or not exist yet) and writable; checked before any work starts."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ResegError(f"{flag} {folder} is an existing file; expected a folder (or a path that does not exist)")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ResegError(f"{flag} {folder}: {probe} is a file, so the folder cannot be created")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ResegError(f"{flag} {folder} is not writable ({probe} does not allow writing)")
    return folder


def check_output_file(path: str | Path, flag: str) -> Path:
    """An output file's folder must be creatable and writable, and the path must not be a folder."""
    file = Path(path)
    if file.is_dir():
        raise ResegError(f"{flag} {file} is a folder; expected a file name")
    check_output_dir(file.parent if str(file.parent) else Path("."), f"{flag} (its folder)")
    return file


def replace_dir(new: Path, target: Path) -> None:
    """Put the finished folder `new` at `target`: rename the old one aside, rename the new one in, delete the old.

    At every moment `target` is either the old folder or the new one.
    """
    target = Path(target)
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    had_old = target.exists()
    if had_old:
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if had_old:
            os.replace(old, target)
        raise
    if had_old:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)
