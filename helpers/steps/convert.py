"""ONNX / TorchScript -> .rknn: the two load paths, build, atomic export, and the notebook-20 step around them.

The simulator cannot run a `.rknn` loaded with `load_rknn`; it needs the model built from its source
in the same process. `build_on` is that one sequence (config -> load -> build), shared by
`convert` (which then exports) and by every notebook that needs a simulator-ready toolkit. A build
that fails in a graph rule is repeated without it when the toolkit's log names it
(helpers.toolkit.session.RKNN); the record (helpers.toolkit.record) keeps those rules, so `rebuild`
applies exactly the same ones. The options live in helpers.toolkit.options, the sentences in helpers.text.convert.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from helpers import listing
from helpers.core.errors import WorkbookError, strip_ansi
from helpers.core.paths import Run, atomic_path
from helpers.core.step_cache import Step
from helpers.steps.export import exporter
from helpers.toolkit.options import (
    ConvertConfig,
    source_kind,
)
from helpers.toolkit.record import (
    RECORD,
    ConvertRecord,
    ConvertResult,
    start_record,
)
from helpers.toolkit.session import RKNN

# ---------------------------------------------------------------- load

def model_channels(source: Path, load_path: str = "auto") -> int:
    """Input channel count of the model (from the ONNX graph or the TorchScript sidecar; else 3)."""
    source = Path(source)
    if source_kind(source, load_path) == "onnx":
        shape = exporter.onnx_io(source)["inputs"][0]["shape"]
        return int(shape[1]) if len(shape) == 4 and isinstance(shape[1], int) else 3
    side = exporter.read_sidecar(source)
    return int(side.get("channels", 3)) if side else 3


def source_for(run: Run, load_path: str) -> Path:
    """The exported file notebook 10 wrote for a load path: model.onnx or model.torchscript."""
    if load_path == "onnx":
        return run.need("model/model.onnx", "10_export.ipynb")
    if load_path == "pytorch":
        ts = run.model / "model.torchscript"
        if not ts.exists() and (run.model / "model.onnx").exists():
            raise WorkbookError(f"{ts} does not exist because notebook 10 was given an ONNX model; use load_path='onnx' (or "
                                "give notebook 10 a .pt).")
        return run.need("model/model.torchscript", "10_export.ipynb")
    raise WorkbookError(f"load_path={load_path!r} is unknown; use 'onnx' (load_onnx) or 'pytorch' (load_pytorch with "
                        "TorchScript).")


@dataclass
class LoadCall:
    """The load call for a model file: kind 'onnx' -> rk.load_onnx(**kwargs), 'pytorch' -> rk.load_pytorch(**kwargs)."""

    kind: str
    kwargs: dict[str, Any]


def load_arguments(source: Path, input_size: int, load_path: str = "auto") -> LoadCall:
    """Check the model file (exists, opset / torch version, input size fits) and return its load call:
    load_onnx(model=...) (with inputs/input_size_list when dims are dynamic) or load_pytorch(model=, input_size_list=)."""
    source = Path(source).resolve()  # absolute: the toolkit runs inside a work folder
    if not source.is_file():
        raise WorkbookError(f"Model file {source} does not exist; run notebooks/10_export.ipynb or pass an existing "
                            ".onnx/.torchscript path.")
    kind = source_kind(source, load_path)
    if kind == "onnx":
        inp = exporter.check_onnx(source, input_size=input_size)["inputs"][0]
        if all(isinstance(d, int) and d > 0 for d in inp["shape"]):
            return LoadCall("onnx", {"model": str(source)})
        # dynamic dims (e.g. an export with dynamic=True): fix them to one image of input_size
        channels = inp["shape"][1] if isinstance(inp["shape"][1], int) and inp["shape"][1] > 0 else 3
        return LoadCall("onnx", {"model": str(source), "inputs": [inp["name"]],
                                 "input_size_list": [[1, channels, input_size, input_size]]})
    exporter.check_torchscript(source, input_size=input_size)
    channels = model_channels(source, load_path)
    return LoadCall("pytorch", {"model": str(source), "input_size_list": [[1, channels, input_size, input_size]]})


def load_source(rk: Any, source: Path, input_size: int, load_path: str = "auto") -> None:
    """Load an ONNX (`load_onnx`) or TorchScript (`load_pytorch` with input_size_list) source into rk,
    after checking the file, its opset / torch version and that input_size fits the model."""
    call = load_arguments(source, input_size, load_path)
    if call.kind == "onnx":
        rk.load_onnx(**call.kwargs)
    else:
        rk.load_pytorch(**call.kwargs)
    rk.input_channels = model_channels(source, load_path)  # read by backends fed from this toolkit (1 = grayscale)


def check_dataset(dataset: Path | None, cfg: ConvertConfig) -> Path | None:
    """The calibration list must exist, be non-empty and name existing images (quantized builds only)."""
    if not cfg.do_quantization:
        return None
    if dataset is None:
        raise WorkbookError("do_quantization=True needs a calibration list; pass dataset= a text file with one image path per "
                            "line.")
    dataset = Path(dataset)
    if not dataset.is_file():
        raise WorkbookError(f"Calibration list {dataset} does not exist; write one with "
                            "helpers.tasks.data.write_calibration_list.")
    lines = [ln.strip() for ln in dataset.read_text().splitlines() if ln.strip()]
    if not lines:
        raise WorkbookError(f"Calibration list {dataset} is empty; put at least one image path in it (calib_images >= 1).")
    for ln in lines:
        whole = Path(ln) if Path(ln).is_absolute() else dataset.parent / ln
        if len(ln.split()) > 1 and whole.is_file():
            raise WorkbookError(f"Calibration list {dataset} names {whole}, whose path has a space the toolkit splits on; write "
                                "the list with helpers.tasks.data.write_calibration_list (it links such images under plain "
                                "names).")
        for item in ln.split():
            p = Path(item) if Path(item).is_absolute() else dataset.parent / item  # the toolkit's own rule
            if not p.is_file():
                raise WorkbookError(f"Calibration list {dataset} names missing image {p}; fix the line or regenerate the list.")
    return dataset


def build_on(rk: Any, source: Path, cfg: ConvertConfig, dataset: Path | None, input_size: int, load_path: str = "auto") -> None:
    """config + load + build on an open helpers.toolkit.session.RKNN (which retries a build the toolkit
    attributes to a graph rule); afterwards rk can export or init_runtime(target=None)."""
    source = Path(source)
    if not source.is_file():
        raise WorkbookError(f"Model file {source} does not exist; run notebooks/10_export.ipynb or pass an existing "
                            ".onnx/.torchscript path.")
    cfg.validate(model_channels(source, load_path))
    dataset = check_dataset(dataset, cfg)
    # Absolute paths: helpers.toolkit.session runs each call inside a work folder (the toolkit drops files in the CWD).
    rk.config(**cfg.config_kwargs())
    load_source(rk, source.resolve(), input_size, load_path)
    rk.build(**cfg.build_kwargs(dataset.resolve() if dataset else None))


# ---------------------------------------------------------------- convert

_DTYPE_NOTE = re.compile(r"default (input|output) dtype of '([^']+)' is changed from '(\w+)' to '(\w+)'")


def dtype_notes(log_text: str) -> list[str]:
    """The toolkit's 'input/output dtype changed' announcements, one short line each."""
    seen: list[str] = []
    for kind, name, old, new in _DTYPE_NOTE.findall(strip_ansi(log_text)):
        note = f"{kind} '{name}': {old} -> {new}"
        if note not in seen:
            seen.append(note)
    return seen


def convert(source: Path, cfg: ConvertConfig, dataset: Path | None, out_rknn: Path, log_path: Path,
            input_size: int, load_path: str = "auto", auto_disable_rules: bool = True) -> ConvertResult:
    """Build and export out_rknn (written under a temporary name, renamed on success), timed; a build
    the toolkit attributes to a graph rule is retried without it (auto_disable_rules)."""
    source, out_rknn, log_path = Path(source), Path(out_rknn), Path(log_path)
    out_rknn.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with atomic_path(out_rknn, ".partial.rknn") as tmp:
        with RKNN(log_path, auto_disable_rules=auto_disable_rules) as rk:
            build_on(rk, source, cfg, dataset, input_size, load_path)
            rk.export_rknn(str(tmp))
        seconds = time.perf_counter() - start
    return result_of(rk, out_rknn, source, seconds)


def result_of(rk: RKNN, rknn_path: Path, source: Path, seconds: float) -> ConvertResult:
    """The ConvertResult of a finished build on rk: sizes, the dtype notes of its log, rules disabled."""
    notes = dtype_notes(rk.log_path.read_text(errors="replace")) if rk.log_path.exists() else []
    return ConvertResult(Path(rknn_path), rk.log_path, round(seconds, 3), Path(source).stat().st_size,
                         Path(rknn_path).stat().st_size,
                         notes, list(rk.auto_disabled))


def convert_isolated(source: str, config: dict, dataset: str | None, out_rknn: str, log_path: str, input_size: int,
                     load_path: str = "auto", auto_disable_rules: bool = True) -> dict[str, Any]:
    """`convert` with JSON arguments and result, for helpers.core.isolate.run_isolated (sweeps, matrix)."""
    res = convert(Path(source), ConvertConfig.from_dict(config), Path(dataset) if dataset else None, Path(out_rknn),
                  Path(log_path), int(input_size), load_path, auto_disable_rules)
    return {"rknn_path": str(res.rknn_path), "seconds": res.seconds, "rknn_bytes": res.rknn_bytes,
            "dtype_notes": res.dtype_notes, "auto_disabled": [asdict(d) for d in res.auto_disabled]}


def conversion_step(run: Run, cfg: ConvertConfig, params: dict[str, Any], source: Path, calibration: Path | None):
    """The cache step of notebook 20; when it must recompute, its record, rknn/convert.json and the old
    model.rknn are removed first (an interrupted build can never look finished)."""
    key = cfg.to_dict() | {k: params[k] for k in ("load_path", "imgsz", "auto_disable_rules") if k in params}
    step = Step(run, "20_convert", key, inputs=[p for p in (source, calibration) if p is not None],
                outputs=[run.rknn / "model.rknn", run.root / RECORD])
    if not step.check():
        start_record(run)
    return step


def raw_calls(record: ConvertRecord) -> str:
    """The plain rknn-toolkit2 script of this conversion, with this run's values, ready to copy."""
    load = load_arguments(record.source, record.input_size, record.load_path)  # e.g. input_size_list for dynamic dims
    lines = [listing.call(f"rknn.load_{load.kind}", **load.kwargs) if ln.startswith("rknn.load_") else ln
             for ln in listing.convert_calls(record)]
    return listing.code(*lines, listing.call("rknn.export_rknn", record.rknn_path), "rknn.release()")


def rebuild(rk: Any, record: ConvertRecord, **overrides: Any) -> None:
    """Rebuild the recorded model on an open toolkit (e.g. for the simulator); overrides change config
    options (rknn_batch_size=8, quantized_algorithm='mmse', ...)."""
    cfg = ConvertConfig.from_dict({**record.config.to_dict(), **overrides})
    build_on(rk, record.source, cfg, record.dataset, record.input_size, record.load_path)
