"""Image lists the toolkit reads (a build's calibration `dataset`, hybrid step 1's): lines it cannot misread.

The toolkit splits each line of such a list on whitespace and takes every piece as a file, so an image
path with a space (a data_dir named `my imgs`) fails the build ("Unsupport file .../my!"). A line is
written as the image's absolute path when that path is plain (ASCII, no whitespace). Otherwise it is
written relative to the list's own folder, which the toolkit resolves against that folder: the image
itself when it lies below that folder under a plain relative name (the letterboxed copies), else a
link `<list>_links/NNNN.ext` beside the list pointing at the image (a copy where links are not
possible). So the run folder may contain spaces or non-ASCII characters too: its path never enters a line.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Sequence

from helpers.core.errors import WorkbookError
from helpers.core.paths import write_text_atomic


def plain(text: str) -> bool:
    """True when the toolkit reads text as one path: ASCII (any locale) and no whitespace."""
    return text.isascii() and not any(c.isspace() for c in text)


def links_folder(list_file: Path) -> Path:
    """The folder of links beside a list: <stem>_links, with a plain name whatever the list is called."""
    return list_file.with_name(re.sub(r"[^A-Za-z0-9_.-]", "_", list_file.stem) + "_links")


def _link(target: Path, link: Path) -> None:
    try:
        os.symlink(target, link)
    except OSError:  # no symlinks on this file system (or not allowed): a copy reads the same
        shutil.copy2(target, link)


def list_lines(images: Sequence[Path], list_file: Path) -> list[str]:
    """The lines for images (see the module docstring); links are made in a fresh links folder, which
    replaces the old one whole (removed when no line needs a link)."""
    base = list_file.parent.resolve()
    links = links_folder(list_file)
    staging = links.with_name(links.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    lines: list[str] = []
    for i, image in enumerate(images):
        full = Path(image).resolve()
        if plain(str(full)):
            lines.append(str(full))
            continue
        rel = os.path.relpath(full, base)
        if not rel.startswith("..") and plain(rel):
            lines.append(Path(rel).as_posix())
            continue
        suffix = full.suffix if plain(full.suffix) else ""
        if not suffix:
            raise WorkbookError(f"Image {full} has no plain file extension (e.g. .png); rename it so the toolkit can read it.")
        staging.mkdir(parents=True, exist_ok=True)
        _link(full, staging / f"{i:04d}{suffix}")
        lines.append(f"{links.name}/{i:04d}{suffix}")
    shutil.rmtree(links, ignore_errors=True)
    if staging.exists():
        staging.rename(links)
    return lines


def write_image_list(images: Sequence[Path], list_file: str | os.PathLike) -> Path:
    """Write a toolkit image list, one image per line that the toolkit cannot misread, atomically."""
    list_file = Path(list_file)
    list_file.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(list_file, "".join(f"{line}\n" for line in list_lines(images, list_file)))


def read_image_list(list_file: str | os.PathLike) -> list[Path]:
    """The images a list names, as the toolkit reads them (relative lines from the list's folder)."""
    list_file = Path(list_file)
    items = [item for line in list_file.read_text(encoding="utf-8").splitlines() for item in line.split()]
    return [Path(i) if Path(i).is_absolute() else list_file.parent / i for i in items]
