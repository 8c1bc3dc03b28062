"""The layer direction of helpers/: a module imports only from its own layer or lower ones, so a reader knows where
a change goes and no lower layer depends on a higher one. Lazy imports inside functions count as much as the ones
at the top. The check itself is shown to fail on an import planted in a copy of helpers/."""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

from helpers.core.paths import REPO

# rank of each top-level part of helpers/ (packages and the top-level modules); lower ranks never import higher ones
RANK = {"__init__": 0, "core": 0, "listing": 0, "toolkit": 1, "backends": 2, "tasks": 3, "steps": 4, "deploy": 4,
        "text": 5, "runner": 6, "widgets": 7, "__main__": 8}


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import of helpers.* in a module, anywhere in it."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("helpers"):
            names = [f"helpers.{a.name}" for a in node.names] if node.module == "helpers" else [node.module]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("helpers.")]
    return found


def layer_problems(helpers: Path) -> list[str]:
    """One line per import that goes up the layers, and per part of helpers/ that has no rank."""
    problems = []
    for path in sorted(helpers.rglob("*.py")):
        rel = path.relative_to(helpers)
        layer = rel.parts[0].removesuffix(".py")
        if layer not in RANK:
            problems.append(f"{rel}: helpers/{rel.parts[0]} has no layer; add it to RANK in tests/test_layers.py")
            continue
        for line, module in imported(ast.parse(path.read_text(encoding="utf-8"))):
            theirs = module.split(".")[1]
            if RANK.get(theirs, -1) > RANK[layer]:
                problems.append(f"{rel}:{line}: {layer} (rank {RANK[layer]}) imports {module} ({theirs}, rank {RANK[theirs]})")
    return problems


def test_no_module_imports_from_a_higher_layer():
    problems = layer_problems(REPO / "helpers")
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_the_check_fails_on_a_planted_upward_import(tmp_path):
    """core is the lowest layer: a lazy import of the runner from core.paths, in a copy of helpers/, is reported."""
    copy = tmp_path / "helpers"
    shutil.copytree(REPO / "helpers", copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = layer_problems(copy)
    paths = copy / "core" / "paths.py"
    paths.write_text(paths.read_text(encoding="utf-8") + "\n\ndef planted():\n    from helpers.runner import cli\n",
                     encoding="utf-8")
    after = layer_problems(copy)
    assert [p for p in after if p not in before] == [
        f"core/paths.py:{len(paths.read_text().splitlines())}: core (rank 0) imports helpers.runner (runner, rank 6)"]


def test_a_part_without_a_layer_is_reported(tmp_path):
    copy = tmp_path / "helpers"
    (copy / "segment").mkdir(parents=True)
    (copy / "segment" / "__init__.py").write_text("")
    assert layer_problems(copy) == ["segment/__init__.py: helpers/segment has no layer; add it to RANK in tests/test_layers.py"]
