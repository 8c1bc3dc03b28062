"""Nothing changed, nothing runs: whole-notebook reuse for the runner (its outcomes: helpers.core.run_status).

A notebook's reuse key hashes its file, its parameters (minus run_dir), the sources of the helpers
modules it imports (and theirs, transitively), the versions of the toolkit and the libraries whose
results it keeps, the files its path parameters name, and the keys of the notebooks before it (their
outputs are its inputs). After a successful run the runner records the key and the files the notebook
wrote; a later run with the same key, the executed notebook and those files unchanged, reuses them
without starting a kernel. "Unchanged" is size and mtime for every file, and content (a sha256 recorded
when written, helpers.core.stamps) for the models and records: a model rewritten in place with its size and
mtime kept is not reused.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from helpers.core import leftovers, stamps
from helpers.core.paths import REPO, write_json_atomic

HELPERS = Path(__file__).resolve().parents[1]
VERSIONED = ("rknn-toolkit2", "torch", "onnx", "onnxruntime", "ultralytics", "numpy", "opencv-python")
IGNORED_PARAMS = {"run_dir"}
# Written by the runner, or by every notebook (the effective-parameters file): not a notebook's output.
NOT_OUTPUTS = {"executed", "report", "params.json", ".tmp"}
RECORDS = "reuse.json"


def sha(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


@lru_cache(maxsize=1)
def versions() -> tuple[tuple[str, str], ...]:
    """Installed versions of the packages whose behaviour a notebook's results depend on."""
    out = []
    for dist in VERSIONED:
        try:
            out.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            out.append((dist, "absent"))
    return tuple(out)


def _helpers_module(name: str) -> Path | None:
    """The source file of a `helpers...` module name, or None when it is not one of ours."""
    if name != "helpers" and not name.startswith("helpers."):
        return None
    rel = Path(*name.split(".")[1:])
    for path in (HELPERS / rel / "__init__.py", (HELPERS / rel).with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _imports_of(path: Path) -> set[str]:
    """Module names a helpers source file imports (absolute, relative resolved; lazy imports included)."""
    package = ".".join(("helpers", *path.parent.relative_to(HELPERS).parts))
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def code_files(modules: list[str]) -> list[Path]:
    """The helpers source files these modules are, plus every helpers file they import, transitively."""
    seen: dict[Path, None] = {}
    todo = [p for p in (_helpers_module(m) for m in modules) if p]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = None
        # importing helpers.a.b runs helpers/__init__.py and helpers/a/__init__.py first
        todo += [d / "__init__.py" for d in path.parents if d.is_relative_to(HELPERS) and (d / "__init__.py") not in seen]
        todo += [p for p in (_helpers_module(m) for m in _imports_of(path)) if p and p not in seen]
    return sorted(seen)


def path_signature(value: Any) -> Any:
    """For a parameter naming an existing file or folder: its files' names, sizes and mtimes."""
    if not isinstance(value, str) or not value.strip() or len(value) > 4096:
        return None
    path = Path(value).expanduser()
    path = path if path.is_absolute() else REPO / path
    try:
        if path.is_file():
            st = path.stat()
            return [path.name, st.st_size, st.st_mtime_ns]
        if path.is_dir():
            return [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns]
                    for p in sorted(path.rglob("*")) if p.is_file()]
    except OSError:
        return None
    return None


def notebook_key(notebook: Path, params: dict[str, Any], modules: list[str], upstream: list[str],
                 board: bool = False) -> str:
    """The reuse key of one notebook (see the module docstring). board: the notebook looks for a board,
    so the board named by RKNN_DEVICE_ID is an input too (a newly attached board needs --rerun)."""
    clean = {k: v for k, v in sorted(params.items()) if k not in IGNORED_PARAMS}
    code = [(str(p.relative_to(HELPERS)), hashlib.sha256(p.read_bytes()).hexdigest()) for p in code_files(modules)]
    paths = {k: path_signature(v) for k, v in clean.items() if path_signature(v) is not None}
    device = os.environ.get("RKNN_DEVICE_ID", "") if board else ""
    return sha(Path(notebook).read_bytes(), clean, code, list(versions()), paths, upstream, device)


# ----------------------------------------------------------------------------- what a notebook wrote


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, whole-second mtime)} of the run folder's files, runner files excluded.
    Whole seconds: a folder shipped as a tar archive (a remote variants run) keeps them."""
    out: dict[str, tuple[int, int]] = {}
    if not root.is_dir():
        return out
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if rel.parts[0] in NOT_OUTPUTS or leftovers.is_temporary(p.name) or not p.is_file():
            continue
        st = p.stat()
        out[rel.as_posix()] = (st.st_size, int(st.st_mtime))
    return out


def changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {k: v for k, v in after.items() if before.get(k) != v}


@dataclass
class Decision:
    """Whether one notebook can be reused, and why not when it cannot."""

    key: str
    reuse: bool
    why: str
    finished: str = ""


def records(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / "executed" / RECORDS).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def decide(root: Path, name: str, key: str) -> Decision:
    """Reuse when the recorded key matches and the executed notebook and the recorded outputs are as left."""
    rec = records(root).get(name)
    if not isinstance(rec, dict):
        return Decision(key, False, "never ran here")
    if rec.get("key") != key:
        return Decision(key, False, "parameters, inputs or code changed")
    if not (root / "executed" / f"{name}.ipynb").is_file():
        return Decision(key, False, "its executed notebook is missing")
    now = listing(root)
    for rel, stat in (rec.get("outputs") or {}).items():
        if tuple(now.get(rel, ())) != tuple(stat):
            return Decision(key, False, f"{rel} changed or is missing")
    for rel, recorded in (rec.get("hashes") or {}).items():
        why = stamps.differs(root / rel, recorded)
        if why:
            return Decision(key, False, f"{rel} {why}")
    return Decision(key, True, "unchanged", str(rec.get("finished", "?")))


def record(root: Path, name: str, key: str, before: dict[str, tuple[int, int]]) -> None:
    """After a successful run: remember its key and the files it wrote (and still-present earlier ones)."""
    data = records(root)
    after = listing(root)
    previous = (data.get(name) or {}).get("outputs") or {}
    outputs = {rel: after[rel] for rel in previous if rel in after}
    outputs.update(changed(before, after))
    old = (data.get(name) or {}).get("hashes") or {}
    hashes = {rel: stamps.refresh(root / rel, old.get(rel)) for rel in outputs if stamps.matters(rel)}
    # A file a later notebook rewrites belongs to that one: drop it from the earlier records.
    for other, rec in data.items():
        if other != name and isinstance(rec, dict):
            rec["outputs"] = {k: v for k, v in (rec.get("outputs") or {}).items() if k not in outputs or other > name}
            rec["hashes"] = {k: v for k, v in (rec.get("hashes") or {}).items() if k in rec["outputs"]}
    data[name] = {"key": key, "outputs": outputs, "hashes": hashes, "finished": stamp()}
    write_json_atomic(root / "executed" / RECORDS, data)


def forget(root: Path, name: str) -> None:
    """A notebook that starts running again is not reusable until it succeeds (its outputs list stays)."""
    data = records(root)
    if isinstance(data.get(name), dict) and data[name].get("key") is not None:
        data[name]["key"] = None
        write_json_atomic(root / "executed" / RECORDS, data)


def recorded_key(root: Path, name: str) -> str:
    rec = records(root).get(name)
    return str(rec.get("key")) if isinstance(rec, dict) else "<never ran>"


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")

