"""What a variants file means: its named variants laid over the base parameters, a grid (the cartesian product of
parameter lists), the notebooks every variant shares; the reason a variant failed in one line, and the
comparison page's plots across the grid."""
from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from helpers.core.errors import WorkbookError
from helpers.core.paths import REPO
from helpers.runner import execute

MAX_VARIANTS = 24  # a grid larger than this needs --yes (or --max-variants N)


def grid_key(key: str, path: Path) -> tuple[str, str]:
    """'20_convert.calib_images' -> ('20_convert', 'calib_images'); 'imgsz' -> ('common', 'imgsz');
    a key no notebook declares is an error naming the valid forms."""
    books = {execute.notebook_name(nb): nb for nb in execute.notebooks()}
    section, _, param = str(key).rpartition(".")
    section = section or "common"
    if section == "common":
        ok = any(param in execute.declared_parameters(nb) for nb in books.values())
    else:
        ok = section in books and param in execute.declared_parameters(books[section])
    if not ok:
        example = next((f"{n}.{p}" for n, nb in books.items() for p in execute.declared_parameters(nb) if p != "run_dir"),
                       "20_convert.calib_images")
        raise WorkbookError(f"Grid key {key!r} in variants file {path} is a parameter no notebook declares; write "
                            "NOTEBOOK.PARAMETER "
                            f"(e.g. {example}) or a parameter some notebook declares, as in its parameters cell.")
    return section, param


def check_selected(path: str | Path, only: str | None) -> None:
    """Every grid key and variant section changes a notebook that runs: one that `only` leaves out (or a common
    key no selected notebook declares) would make variants that differ in nothing that runs."""
    data = execute.read_yaml(Path(path), "Variants file", "--variants an existing YAML file")
    selected = {execute.notebook_name(nb): nb for nb in execute.select(only)}
    swept = [(key, *grid_key(key, Path(path))) for key in (data.get("grid") or {})]
    for variant, sections in (data.get("variants") or {}).items():
        for section, values in (sections or {}).items():
            swept += [(f"{variant}: {section}.{param}", section, param) for param in (values or {})]
    for key, section, param in swept:
        runs = (any(param in execute.declared_parameters(nb) for nb in selected.values()) if section == "common"
                else section in selected)
        if not runs:
            raise WorkbookError(f"Variants file {path} varies {key!r} but only: {only} leaves "
                                f"{'every notebook declaring ' + param if section == 'common' else section} out, so its variants "
                                "would not differ; add that notebook to only, or drop the key.")


def slug(value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9._]+", "-", str(value).strip()).strip("-")
    return text or "x"


def expand_grid(grid: Any, path: Path) -> dict[str, tuple[dict[str, dict[str, Any]], dict[str, Any]]]:
    """{variant name: (sections override, {grid key: value})} for every combination of the grid's lists."""
    if not isinstance(grid, dict) or not grid:
        raise WorkbookError(f"Variants file {path}: 'grid:' must map NOTEBOOK.PARAMETER to a list of values, e.g. "
                            "20_convert.calib_images: [10, 50].")
    keys = list(grid)
    parsed = [grid_key(k, path) for k in keys]
    lists = []
    for k in keys:
        values = grid[k] if isinstance(grid[k], list) else [grid[k]]
        if not values:
            raise WorkbookError(f"Grid key {k!r} in variants file {path} has an empty list; give it at least one value.")
        lists.append(values)
    out: dict[str, tuple[dict[str, dict[str, Any]], dict[str, Any]]] = {}
    for combo in itertools.product(*lists):
        parts = [slug(v) if slug(v)[0].isalpha() else f"{param}-{slug(v)}"  # names start with a letter
                 for v, values, (_, param) in zip(combo, lists, parsed) if len(values) > 1]
        name = "_".join(parts) or "grid"
        base, n = name, 2
        while name in out:
            name, n = f"{base}_{n}", n + 1
        sections: dict[str, dict[str, Any]] = {}
        for (section, param), value in zip(parsed, combo):
            sections.setdefault(section, {})[param] = value
        out[name] = (sections, dict(zip(keys, combo)))
    return out


def reason(failure: str) -> str:
    """One line from a failure block: '<notebook>: <Error>: <message>' (or the block's first line)."""
    lines = [ln.rstrip() for ln in (failure or "").splitlines() if ln.strip() and not set(ln.strip()) <= {"─"}]
    if not lines:
        return ""
    name = next((m.group(1) for ln in lines if (m := re.match(r"\s*✗ (\S+) failed", ln))), "")
    marker = next((i for i, ln in enumerate(lines) if ln.strip().startswith("full notebook with outputs:")
                   or ln.strip().startswith("The run stopped here")), None)
    line = lines[marker - 1].strip() if marker else lines[-1].strip()
    line = line.removeprefix("error: ")
    return f"{name}: {line}" if name and not line.startswith(name) else line


# ----------------------------------------------------------------------------- plots across the grid

PLOTTED = ("INT8 top-1 (RKNN simulator)", "Hybrid top-1", "FP32 top-1 (ONNX Runtime)")
# a detector's index rows (helpers.runner.figures): the INT8 label names the converted head, so they are matched by their start
PLOTTED_MAP = ("INT8 ", "Hybrid ", "FP32 ")  # a detector's, segmenter's or pose model's "<precision> <metric>" figures


def plotted(figures: dict[str, dict[str, float | None]]) -> list[str]:
    """The accuracy figures of the variants worth a plot across the grid: top-1 for classifiers, the task's mAP50-95
    (box, mask or pose) for the detector family (the raw value of a 'mAP50-95 / mAP50' row is its mAP50-95)."""
    labels = {label for f in figures.values() for label in f}
    maps = (label for label in labels if label.startswith(PLOTTED_MAP) and "mAP50-95" in label and "same images" not in label)
    return [label for label in PLOTTED if label in labels] + sorted(maps)
BUILD = "Conversion time (load + build + export)"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def plots(root: Path, params: dict[str, dict[str, Any]], figures: dict[str, dict[str, float | None]]) -> list[Path]:
    """PNG plots into <root>/plots/: each accuracy figure against every numeric swept parameter (one line
    per combination of the other swept parameters), and build time per target platform."""
    import matplotlib  # optional and slow: only the variants' comparison page draws plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = root / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for p in params.values() for k in p})
    written: list[Path] = []
    numeric = [k for k in keys if len({str(p.get(k)) for p in params.values()}) > 1
               and all(_number(p.get(k)) is not None for p in params.values())]
    for x in numeric:
        for label in plotted(figures):
            points = {v: (_number(params[v][x]), figures[v].get(label)) for v in params
                      if figures.get(v, {}).get(label) is not None}
            if len(points) < 2:
                continue
            others = [k for k in keys if k != x and len({str(p.get(k)) for p in params.values()}) > 1]
            series: dict[str, list[tuple[float, float]]] = {}
            for v, (xv, yv) in points.items():
                name = ", ".join(f"{k.rpartition('.')[2]}={params[v].get(k)}" for k in others) or "all variants"
                series.setdefault(name, []).append((xv, 100.0 * yv))
            fig, ax = plt.subplots(figsize=(6.4, 4))
            for name, pts in sorted(series.items()):
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
            ax.set_xlabel(x)
            ax.set_ylabel("mAP50-95 (%)" if "mAP50-95" in label else f"{label} (%)")
            ax.set_title(f"{label.replace(' / mAP50', '')} vs {x.rpartition('.')[2]}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = out_dir / f"{slug(label)}_vs_{slug(x)}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    chip = next((k for k in keys if k.endswith("target_platform") and len({str(p.get(k)) for p in params.values()}) > 1), None)
    if chip:
        per: dict[str, list[float]] = {}
        for v, p in params.items():
            secs = figures.get(v, {}).get(BUILD)
            if secs is not None and p.get(chip) is not None:
                per.setdefault(str(p[chip]), []).append(secs)
        if per:
            fig, ax = plt.subplots(figsize=(6.4, 4))
            names = sorted(per)
            ax.bar(names, [sum(per[n]) / len(per[n]) for n in names], color="#4c72b0")
            ax.set_xlabel("target platform")
            ax.set_ylabel("build time, mean over variants (s)")
            ax.set_title("Conversion time (load + build + export) per chip")
            fig.tight_layout()
            path = out_dir / "build_time_per_chip.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    return written


# ----------------------------------------------------------------------------- variants files

FILE_KEYS = {"base", "only", "variants", "grid"}


def load_variants(path: str | Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Read a variants file -> ({variant: full parameters config}, only). Each variant's sections are laid
    over the `base:` parameters file (path relative to the repo root or to the variants file); `grid:`
    (NOTEBOOK.PARAMETER: [values]) adds one variant per combination of its lists."""
    path = Path(path)
    data = execute.read_yaml(path, "Variants file", "--variants an existing YAML file (see params/variants_platforms.yaml)")
    if not isinstance(data, dict) or set(data) - FILE_KEYS:
        extra = sorted(set(data) - FILE_KEYS) if isinstance(data, dict) else data
        raise WorkbookError(f"Variants file {path} has unknown key(s) {extra}; valid keys: {', '.join(sorted(FILE_KEYS))}.")
    variants = data.get("variants") or {}
    if not isinstance(variants, dict) or not (variants or data.get("grid")):
        raise WorkbookError(f"Variants file {path} needs a non-empty 'variants:' mapping of name: {{section: {{param: "
                            "value}} or a 'grid:'.")
    base: dict[str, Any] = {}
    if data.get("base"):
        base_path = Path(data["base"])
        if not base_path.is_absolute():
            base_path = (REPO / base_path) if (REPO / base_path).exists() else path.parent / base_path
        base = execute.load_params_file(base_path)
    overrides: dict[str, Any] = {}
    if data.get("grid") is not None:
        overrides.update({name: sections for name, (sections, _) in expand_grid(data["grid"], path).items()})
    for name, override in variants.items():
        if str(name) in overrides:
            raise WorkbookError(f"Variant {name!r} has the name of a grid combination; rename it.")
        overrides[str(name)] = override
    configs = {}
    for name, override in overrides.items():
        if not isinstance(override, dict) or not str(name).replace("-", "_").replace(".", "_").isidentifier():
            raise WorkbookError(f"Variant {name!r} must be a simple name mapped to parameter sections (e.g. "
                                "rk3566: {20_convert: {target_platform: rk3566}}).")
        merged = {k: dict(v or {}) for k, v in base.items()}
        for section, values in override.items():
            if not isinstance(values, dict):
                raise WorkbookError(f"Variant {name!r} section {section!r} must be a mapping of parameter: value.")
            merged[section] = {**merged.get(section, {}), **values}
        configs[str(name)] = merged
    only = data.get("only")
    return configs, (",".join(str(x) for x in only) if isinstance(only, list) else (str(only) if only else None))


def shared_prefix(configs: dict[str, dict[str, Any]], only: str | None) -> list[str]:
    """The leading notebooks whose parameters are the same in every variant (their results are too)."""
    prefix = []
    for nb in execute.select(only):
        if len({repr(sorted(execute.params_for(nb, c).items())) for c in configs.values()}) != 1:
            break
        prefix.append(execute.notebook_name(nb))
    return prefix
