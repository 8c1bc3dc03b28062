"""Where things live: the repository, the bundled sample, and the folders of one run."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from helpers.core.errors import WorkbookError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary sibling of `path` (a file or a folder) to write; on success it is renamed onto `path`
    (an existing folder there is replaced), on any error removed: a reader never sees a half-written artifact.
    The one write-then-rename of the workbook; `suffix` keeps an extension a writer insists on (".tmp.onnx")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + suffix)
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            _remove(path)
        tmp.replace(path)
    except BaseException:  # a full disk, no permission, an interrupt: no half-written temporary is left
        with contextlib.suppress(OSError):
            _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text under a temporary name, then rename: a reader never sees a half-written file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any, default: Callable[[Any], Any] = str) -> Path:
    """JSON (indented) written with write_text_atomic; default converts what json cannot."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=default))

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
OUTPUTS = REPO / "outputs"
SAMPLE_DATA = DATA / "digits"
DEFAULT_RUN = OUTPUTS / "sample"
KERNEL_NAME = "rknn-workbook"
# Set in the environment of the kernels the runner starts: there the parameter form is not interactive
# and papermill's injected values stand as given (helpers.widgets carries no edits between forms).
HEADLESS_ENV = "WORKBOOK_HEADLESS"


@dataclass(frozen=True)
class Run:
    """One run folder; every notebook reads and writes only below it."""

    root: Path

    @classmethod
    def at(cls, run_dir: str | os.PathLike) -> "Run":
        root = Path(run_dir).expanduser()
        root = (root if root.is_absolute() else REPO / root).resolve()  # relative = from the repo root
        if root.exists() and not root.is_dir():
            raise WorkbookError(f"Run folder {root} is a file; pass run_dir= a folder path (it is created if missing).")
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise WorkbookError(
                f"Run folder {root} cannot be written ({exc.strerror}); pass run_dir= a folder you can write to "
                "(or fix its permissions)."
            ) from None
        return cls(root)

    def relative(self, path: str | os.PathLike) -> str:
        """How an artifact records a path: relative to the run folder when inside it (so the folder can
        be moved or shared), else absolute."""
        path = Path(path).expanduser().resolve()
        try:
            return path.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def resolve(self, recorded: str | os.PathLike) -> Path:
        """The path an artifact recorded with relative(): run-folder-relative paths are taken from this
        run folder, absolute ones as they are."""
        path = Path(recorded).expanduser()
        return path if path.is_absolute() else self.root / path

    def sub(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # One folder per step, created on first use: run.model, run.rknn, ... run.logs. FOLDERS: every folder the
    # workbook writes in a run (the step folders, the runner's, the step cache): nothing else below root is its own.
    FOLDERS = ("model", "rknn", "eval", "board", "analysis", "hybrid", "logs", "executed", "report", ".cache")
    model = property(lambda self: self.sub("model"))
    rknn = property(lambda self: self.sub("rknn"))
    eval = property(lambda self: self.sub("eval"))
    board = property(lambda self: self.sub("board"))
    analysis = property(lambda self: self.sub("analysis"))
    hybrid = property(lambda self: self.sub("hybrid"))
    logs = property(lambda self: self.sub("logs"))

    def need(self, relative: str, notebook: str) -> Path:
        """Return an earlier step's artifact, or say exactly which notebook makes it."""
        path = self.root / relative
        if not path.exists():
            raise WorkbookError(
                f"{path} is missing; run notebooks/{notebook} with run_dir={str(self.root)!r} first."
            )
        return path
