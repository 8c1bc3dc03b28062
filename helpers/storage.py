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

FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_ERRNO = re.compile(r"\[Errno (\d+)\] ([^:\]]+?)(?:: '([^']*)')?(?:$|[,;)\n])")
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


def find(exc: BaseException | None) -> Fault | None:
    """The disk-full or not-writable error inside exc (its causes, or a notebook cell's error text), else None."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in FULL | DENIED:
            name = exc.filename if isinstance(exc.filename, (str, os.PathLike)) else None
            return Fault(exc.errno, exc.strerror or os.strerror(exc.errno), Path(name) if name else None)
        text = str(getattr(exc, "evalue", "") or "") if getattr(exc, "ename", None) else ""
        for m in _ERRNO.finditer(text):
            if int(m.group(1)) in FULL | DENIED:
                return Fault(int(m.group(1)), m.group(2).strip(), Path(m.group(3)) if m.group(3) else None)
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
    from .leftovers import is_temporary

    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            if is_temporary(name):
                with contextlib.suppress(OSError):
                    found.append((Path(folder) / name, (Path(folder) / name).stat().st_size))
    return sorted(found, key=lambda item: -item[1])


def sentence(what: str, fault: Fault, root: Path, log: Path | None, partial: list[tuple[Path, int]] = ()) -> str:
    """One sentence: what stopped, the file, free space (and what the cut-short file held) or the unwritable
    folder, the fix, where the details are. partial: half_written() before they were removed."""
    path = fault.path or (partial[0][0] if partial else root)
    details = f" (details: {log})" if log else ""
    if fault.full:
        usage = shutil.disk_usage(_existing(path))
        held = next((f"{mb(size)} written when the disk filled, so it needs more than that; " for p, size in partial if p == path), "")
        return (f"{what} stopped: the disk is full ({fault.strerror}) writing {path} ({held}{mb(usage.free)} of {mb(usage.total)} "
                f"free now that the half-written files are removed): free space on that disk (or pass --run-dir a folder on a "
                f"larger one) and run again; what finished is reused{details}.")
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
