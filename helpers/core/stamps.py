"""Content stamps of written files: reuse checks what a file holds, not only its size and time.

A stamp is the file's sha256 (streamed) with the stat fields seen when it was hashed. Checking a file
re-hashes it unless its size, mtime, inode and ctime are all as stamped and the ctime is older than the
stamp by more than RACY_NS. The ctime cannot be set from user space (os.utime and every write move it
to "now"), so a file rewritten in place with its size and mtime restored always gets re-hashed; the
margin covers coarse file-system clocks (a change in the same tick as the stamp), as git does for its
index. Only the kinds whose change matters are stamped (models, records): see MATTERS.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Iterable

# Models (.data: an ONNX model's external weights) and the JSON/CSV records the index and later steps read.
MATTERS = {".rknn", ".onnx", ".data", ".pt", ".torchscript", ".json", ".csv"}
RACY_NS = 2_000_000_000  # 2 s: FAT keeps 2 s times; ext4/tmpfs/xfs a few ms


def matters(path: str | os.PathLike) -> bool:
    """True for a file whose content a reuse decision must check (a model or a record)."""
    return Path(path).suffix.lower() in MATTERS


def sha256(path: str | os.PathLike) -> str:
    """The file's sha256, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def stamp(path: str | os.PathLike) -> dict[str, Any]:
    """{stat: [size, mtime_ns, inode, ctime_ns], sha256, at_ns} of one file (hashed now)."""
    path = Path(path)
    at = time.time_ns()
    before = _stat(path)
    digest = sha256(path)
    if _stat(path) != before:  # written while being read: a stamp that can never be trusted by stat
        before = [before[0], -1, -1, -1]
    return {"stat": before, "sha256": digest, "at_ns": at}


def unchanged_by_stat(path: Path, recorded: dict[str, Any]) -> bool:
    """True when the stat fields prove the content is as stamped (no hashing needed)."""
    try:
        now = _stat(path)
    except OSError:
        return False
    stat = recorded.get("stat")
    return now == stat and isinstance(stat, list) and stat[3] < int(recorded.get("at_ns", 0)) - RACY_NS


def differs(path: str | os.PathLike, recorded: dict[str, Any]) -> str | None:
    """None when the file holds what was stamped; else why not ('is missing', 'content changed')."""
    path = Path(path)
    if not path.is_file():
        return "is missing"
    if unchanged_by_stat(path, recorded):
        return None
    try:
        same = sha256(path) == recorded.get("sha256")
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return None if same else "content changed (its sha256 differs from the one recorded when it was written)"


def refresh(path: str | os.PathLike, recorded: dict[str, Any] | None) -> dict[str, Any]:
    """The recorded stamp when stat proves it still holds, else a new one (so unchanged large files are
    not hashed again when a record is rewritten)."""
    if recorded and unchanged_by_stat(Path(path), recorded):
        return recorded
    return stamp(path)


def files_under(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files that matter among paths, a folder standing for the files below it."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and matters(f))
        elif p.is_file() and matters(p):
            out.append(p)
    return out
