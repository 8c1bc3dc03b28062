"""What a failed or interrupted notebook leaves behind: temporary files are removed, and an executed notebook
written under its temporary name is kept only when it is whole (it shows where the run stopped).

Every artifact is written under a temporary name and renamed when complete (`x.tmp`, `x.partial.onnx`,
`deploy.partial`, a `.tmp` staging folder), so after a fault such names are exactly the half-written
files: nothing else in the run folder is touched.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from helpers.core.paths import Run


def is_temporary(name: str) -> bool:
    """True for the workbook's temporary names: *.tmp, *.partial, *.partial.<ext>."""
    return name.endswith((".tmp", ".partial")) or ".partial." in name


def remove_temporaries(root: str | Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Delete every temporary file or folder directly in the run folder root or below the folders the workbook
    writes there (Run.FOLDERS; other folders of a --run-dir that holds other things are never looked into) and
    return their run-relative names. Links are removed, never followed; the top-level folders named in skip (e.g. "report"
    while it is being rendered) and run folders nested inside root (their own runner owns them) are left alone."""
    root = Path(root)
    removed: list[str] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        keep = []
        for name in dirs:
            path = here / name
            if (here == root and name in skip) or (path / "executed").is_dir():
                continue
            if is_temporary(name) and not path.is_symlink():
                with contextlib.suppress(OSError):
                    shutil.rmtree(path)
                    removed.append(path.relative_to(root).as_posix())
                continue
            if here == root and name not in Run.FOLDERS:
                continue  # not a folder the workbook writes: never looked into
            keep.append(name)
        dirs[:] = keep
        for name in files:
            if is_temporary(name):
                with contextlib.suppress(OSError):
                    (here / name).unlink()
                    removed.append((here / name).relative_to(root).as_posix())
    return sorted(removed)


def whole_notebook(path: Path) -> bool:
    """True when path is a complete notebook file (parses as JSON with cells), not a half-written one."""
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")).get("cells"), list)
    except (OSError, ValueError, AttributeError):
        return False


def settle_notebook(partial: Path, final: Path) -> bool:
    """After a failed execution written to partial: a whole notebook replaces final (its error shows where the
    run stopped); a half-written one is deleted together with final (an older run's notebook, no longer true
    of this run). Returns whether final now exists."""
    if whole_notebook(partial):
        partial.replace(final)
        return True
    with contextlib.suppress(OSError):
        partial.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
    return False
