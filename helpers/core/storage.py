"""A full disk or a folder that cannot be written, said in one sentence: what stopped, which file, how much
space is free (or which folder is not writable) and what to do; the full error goes to a log.

Found wherever it surfaces: an OSError in the runner (papermill writing the executed notebook, status.json),
or a notebook cell's error as papermill reports it (ename OSError, evalue "[Errno 28] No space left ...").
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helpers.core.leftovers import is_temporary

FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_ERRNO = re.compile(r"\[Errno (\d+)\] ([^:'\n]+)(?:: '([^']*)'(?: -> '([^']*)')?)?")
LOG = "failure.log"


@dataclass
class Fault:
    """A storage error: its errno, the system's words for it and the file it was writing (when known)."""

    errno: int
    strerror: str
    path: Path | None

    @property
    def full(self) -> bool:
        return self.errno in FULL


def find(exc: BaseException | None, root: Path | None = None) -> Fault | None:
    """The disk-full or not-writable error inside exc (its causes, or a notebook cell's error text), else None.
    With root, a permission error on a file outside that folder (e.g. reading the user's data) is not one."""
    fault = _find(exc)
    if fault is not None and root is not None and fault.errno in {errno.EACCES, errno.EPERM} and fault.path is not None:
        if not Path(fault.path).resolve().is_relative_to(Path(root).resolve()):
            return None
    return fault


def _find(exc: BaseException | None) -> Fault | None:
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in FULL | DENIED:
            # a copy or a rename: its target is what could not be written
            name = next((n for n in (exc.filename2, exc.filename) if isinstance(n, (str, os.PathLike))), None)
            return Fault(exc.errno, exc.strerror or os.strerror(exc.errno), Path(name) if name else None)
        text = str(getattr(exc, "evalue", "") or "") if getattr(exc, "ename", None) else ""
        for m in _ERRNO.finditer(text):
            if int(m.group(1)) in FULL | DENIED:
                name = m.group(4) or m.group(3)
                return Fault(int(m.group(1)), m.group(2).strip(), Path(name) if name else None)
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def half_written(root: Path) -> list[tuple[Path, int]]:
    """The temporary files below root (what a fault cut short), largest first, with their sizes."""
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            if is_temporary(name):
                with contextlib.suppress(OSError):
                    found.append((Path(folder) / name, (Path(folder) / name).stat().st_size))
    return sorted(found, key=lambda item: -item[1])


# The graphs rknn-toolkit2 dumps after each build phase (check0_base_optimize.onnx, ...) into the step's folder:
# three copies of the model, rewritten by every build; after a full disk the last one is cut short.
TOOLKIT_DUMPS = re.compile(r"^check\d+_\w+\.onnx$")


def remove_toolkit_dumps(root: Path) -> list[Path]:
    """Delete the toolkit's check*.onnx dumps below root (the next build writes them again)."""
    removed = []
    for folder, _, files in os.walk(root):
        for name in files:
            if TOOLKIT_DUMPS.match(name):
                with contextlib.suppress(OSError):
                    (Path(folder) / name).unlink()
                    removed.append(Path(folder) / name)
    return removed


def folder_size(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(folder) / name).lstat().st_size
    return total


def sentence(what: str, fault: Fault, root: Path, log: Path | None, partial: list[tuple[Path, int]] = ()) -> str:
    """One sentence: what stopped, the file, free space (and what the cut-short file held) or the unwritable
    folder, the fix, where the details are. partial: half_written() before they were removed."""
    path = fault.path
    if partial and (path is None or path.name.endswith(".partial.ipynb")):  # papermill could not save the notebook
        path = partial[0][0]  # because the largest half-written file had filled the disk
    path = path or root
    details = f" (details: {log})" if log else ""
    if fault.full:
        usage = shutil.disk_usage(_existing(path))
        written = next((size for p, size in partial if p == path), None)
        held = f"{mb(written)} written when the disk filled, so it needs more than that; " if written is not None else ""
        return (f"{what} stopped: the disk is full ({fault.strerror}) writing {path} ({held}the run folder holds "
                f"{mb(folder_size(root))}; {mb(usage.free)} of {mb(usage.total)} free now that the half-written files are "
                f"removed): free space on that disk (or pass --run-dir a folder on a larger one) and run again; what finished "
                f"is reused{details}.")
    folder = path if path.is_dir() else path.parent
    return (f"{what} stopped: {folder} is not writable ({fault.strerror}) writing {path}; make that folder writable (its "
            f"permissions, or a read-only mount) or pass --run-dir a folder you can write to, and run again{details}.")


def write_log(root: Path, text: str) -> Path | None:
    """The full error in <run>/executed/failure.log, or in the temporary folder when the run folder takes nothing."""
    for folder in (Path(root) / "executed", Path(tempfile.gettempdir())):
        path = folder / (LOG if folder.parent == Path(root) else f"workbook-{Path(root).name}-{LOG}")
        try:
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
    return None
