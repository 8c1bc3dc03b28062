"""What a failed or interrupted notebook leaves behind: temporary files are removed, and an executed notebook
written under its temporary name is kept only when it is whole (it shows where the run stopped).

Every artifact is written under a temporary name and renamed when complete (`x.tmp`, `x.partial.onnx`,
`deploy.partial`, a `.tmp` staging folder), so after a fault such names are exactly the half-written
files: nothing else in the run folder is touched.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path


def is_temporary(name: str) -> bool:
    """True for the workbook's temporary names: *.tmp, *.partial, *.partial.<ext>."""
    return name.endswith((".tmp", ".partial")) or ".partial." in name


def remove_temporaries(root: str | Path) -> list[str]:
    """Delete every temporary file or folder below root (links are removed, never followed); returns the
    run-relative names removed."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = sorted((p for p in root.rglob("*") if is_temporary(p.name)), key=lambda p: len(p.parts))
    removed: list[str] = []
    for path in found:
        if any(Path(r) in path.parents for r in removed):  # inside a folder already removed
            continue
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            removed.append(str(path))
    return [Path(r).relative_to(root).as_posix() for r in removed]


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
