"""The checks of notebook 00: each a small function returning one OK / WARN / FAIL row with its fix."""
from __future__ import annotations

import contextlib
import importlib
import io
import shutil
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import Callable

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from helpers.core.paths import REPO, Run, write_json_atomic
from helpers.toolkit.session import RKNN

OK, WARN, FAIL = "OK", "WARN", "FAIL"
# requirements.txt resolves for 3.10-3.12 (tests/resolve_requirements.py); the toolkit: 3.8-3.12
PYTHON_RANGE = ((3, 10), (3, 12))
# The tutorial's apt line for OpenCV's system libraries; Ubuntu 22.04+ and Debian 12 name libgl1-mesa-glx libgl1.
APT_OPENCV = "sudo apt-get install -y libgl1 libglib2.0-0"
INSTALL_FIX = "run `make setup` (or `pip install -r requirements.txt` in one call) so the pins resolve together"


@dataclass
class Check:
    """One row of the environment table."""

    name: str
    status: str
    detail: str
    fix: str = ""


def toolkit_pins() -> dict[str, str]:
    """The version ranges rknn-toolkit2 itself declares, read from its package metadata."""
    pins = {}
    for req in requires("rknn-toolkit2") or []:
        name, _, spec = req.partition(" ")
        pins[name.lower()] = spec.split(";")[0].strip()
    return pins


def _pin_check(package: str, pins: dict[str, str], note: str = "") -> Check:
    spec = pins.get(package, "")
    try:
        have = version(package)
    except PackageNotFoundError:
        return Check(package, FAIL, "not installed", INSTALL_FIX)
    if spec and have not in SpecifierSet(spec):
        return Check(package, FAIL, f"{have} outside the toolkit's pin {spec}", f"pip install '{package}{spec}' — {INSTALL_FIX}")
    return Check(package, OK, f"{have} (toolkit needs {spec or 'any'}){note}")


def check_python() -> Check:
    v = sys.version_info[:2]
    lo, hi = PYTHON_RANGE
    detail = f"{sys.version.split()[0]} (the workbook's pins are tested on {lo[0]}.{lo[1]}–{hi[0]}.{hi[1]})"
    if lo <= v <= hi:
        return Check("python", OK, detail)
    return Check("python", FAIL, detail, f"create the venv with Python {lo[0]}.{lo[1]}–{hi[0]}.{hi[1]} "
                 "(`make setup PYTHON=python3.10`; it uses python3.11 when present)")


def check_toolkit() -> Check:
    try:
        importlib.import_module("rknn.api")
        return Check("rknn-toolkit2", OK, f"{version('rknn-toolkit2')} imports")
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        return Check("rknn-toolkit2", FAIL, f"import failed: {exc}", "pip install rknn-toolkit2==2.5.0 together with its pins "
                                                                     "(`make setup`)")


def check_torch(pins: dict[str, str]) -> Check:
    row = _pin_check("torch", pins, note="; TorchScript for load_pytorch must be exported by this same torch version")
    row.name = "torch"
    return row


def check_setuptools() -> Check:
    try:
        have = version("setuptools")
    except PackageNotFoundError:
        return Check("setuptools", FAIL, "not installed (the toolkit imports pkg_resources)", "pip install 'setuptools<81'")
    if Version(have) >= Version("81"):
        return Check("setuptools", FAIL, f"{have}: pkg_resources is gone in 81+, the toolkit imports it", "pip install "
                                                                                                          "'setuptools<81'")
    return Check("setuptools", OK, f"{have} (< 81, provides pkg_resources)")


def check_import(module: str, package: str, fix: str) -> Check:
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # first-import chatter (e.g. ultralytics' settings file note)
            mod = importlib.import_module(module)
        return Check(package, OK, f"{getattr(mod, '__version__', version(package))} imports")
    except Exception as exc:  # noqa: BLE001
        return Check(package, FAIL, f"import failed: {exc}", system_library_fix(str(exc)) or fix)


def system_library_fix(error: str) -> str:
    """The apt line for an import that failed on a missing system library (OpenCV's libGL / libglib), else ""."""
    if any(lib in error for lib in ("libGL.so", "libgthread", "libglib")):
        return f"{APT_OPENCV}: OpenCV needs these system libraries (reinstalling opencv-python does not bring them)"
    return ""


def check_kernel() -> Check:
    venv = (REPO / ".venv").resolve()
    exe = Path(sys.executable).resolve()
    if Path(sys.prefix).resolve() == venv:
        return Check("kernel", OK, f"runs the project's interpreter {sys.executable}")
    return Check("kernel", WARN, f"runs {exe}, not {venv}/bin/python",
                 "choose the 'rknn-workbook' kernel (registered by `make setup`) or start JupyterLab with `make lab`")


def check_widgets() -> Check:
    try:
        import ipywidgets  # the import is the check (a broken install is a finding, not a crash)

        major = int(ipywidgets.__version__.split(".")[0])
        try:
            version("jupyterlab_widgets")
        except PackageNotFoundError:
            return Check("ipywidgets", WARN, f"{ipywidgets.__version__} but jupyterlab_widgets missing: forms will not render "
                                             "in JupyterLab", "pip install jupyterlab_widgets")
        if major < 8:
            return Check("ipywidgets", WARN, f"{ipywidgets.__version__} is old for JupyterLab 4", "pip install 'ipywidgets>=8'")
        return Check("ipywidgets", OK, f"{ipywidgets.__version__} with jupyterlab_widgets {version('jupyterlab_widgets')}")
    except Exception as exc:  # noqa: BLE001
        return Check("ipywidgets", WARN, f"not usable ({exc}); parameters still work as literals", "pip install ipywidgets")


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort  # the import is the check (a broken install is a finding, not a crash)

        return Check("onnxruntime", OK, f"{ort.__version__}, providers {', '.join(ort.get_available_providers())}")
    except Exception as exc:  # noqa: BLE001
        return Check("onnxruntime", FAIL, f"import failed: {exc}", "pip install onnxruntime (`make setup`)")


def check_devices(log_path: Path) -> Check:
    try:
        with RKNN(log_path) as rk:
            adb, ntb = rk.list_devices()
    except Exception as exc:  # noqa: BLE001
        return Check("devices", WARN, f"list_devices failed: {exc}", "boards are optional; see notebook 40's checklist")
    if adb or ntb:
        return Check("devices", OK, f"adb: {list(adb)}, ntb: {list(ntb)}")
    return Check("devices", WARN, "no board found (adb and ntb lists empty); the simulator path still works",
                 "for notebook 40: connect the board by USB OTG, check `adb devices`, start rknn_server on the board")


def check_disk(min_ok_gb: float = 5.0, min_warn_gb: float = 1.0) -> Check:
    free = shutil.disk_usage(REPO).free / 1e9
    detail = f"{free:.1f} GB free under {REPO}"
    if free >= min_ok_gb:
        return Check("disk", OK, detail)
    if free >= min_warn_gb:
        return Check("disk", WARN, detail, f"free space: conversions and sweeps write a few hundred MB; {min_ok_gb:.0f} GB is "
                                           "comfortable")
    return Check("disk", FAIL, detail, "free at least 1 GB before converting models")


def run_checks(run: Run) -> list[Check]:
    """All checks of notebook 00, in the order the table shows them."""
    try:
        pins = toolkit_pins()
    except PackageNotFoundError:
        pins = {}
    steps: list[Callable[[], Check]] = [
        check_python,
        check_toolkit,
        lambda: check_torch(pins),
        lambda: _pin_check("numpy", pins),
        lambda: _pin_check("onnx", pins),
        lambda: _pin_check("protobuf", pins),
        check_setuptools,
        lambda: check_import("cv2", "opencv-python", "pip install opencv-python (`make setup`)"),
        check_onnxruntime,
        lambda: check_import("ultralytics", "ultralytics", "pip install ultralytics (`make setup`)"),
        check_kernel,
        check_widgets,
        lambda: check_devices(run.logs / "00_list_devices.log"),
        check_disk,
    ]
    return [step() for step in steps]


def save(run: Run, checks: list[Check]) -> Path:
    """Write the checks and the installed rknn-toolkit2 version (`make setup TOOLKIT=...`) to <run>/env.json (atomic)."""
    summary = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
    try:
        toolkit_version = version("rknn-toolkit2")
    except PackageNotFoundError:
        toolkit_version = None
    data = {"summary": summary, "toolkit_version": toolkit_version, "checks": [asdict(c) for c in checks]}
    return write_json_atomic(run.root / "env.json", data)


def table(checks: list[Check]):
    """The checks as a DataFrame, colour-coded by status when shown in a notebook."""
    import pandas as pd  # optional here: the checks above run (and say what is broken) without it

    df = pd.DataFrame([asdict(c) for c in checks])
    colours = {OK: "#d9f2d9", WARN: "#fff2cc", FAIL: "#f8d0d0"}
    paint = lambda col: [f"background-color: {colours.get(v, '')}" for v in col]  # noqa: E731
    return df.style.apply(paint, subset=["status"]).hide(axis="index")


def requirement_pins(path: Path = REPO / "requirements.txt") -> dict[str, str]:
    """{package: '==version'} that requirements.txt selects for this Python (its environment markers evaluated)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        text = line.split("#", 1)[0].strip()
        if text and not text.startswith("-"):
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate():
                pins[req.name.lower()] = str(req.specifier)
    return pins


def pin_tables() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Two tables: what rknn-toolkit2 itself requires (its metadata) and the workbook's other pins
    (requirements.txt), each with the installed version."""
    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    try:
        toolkit = toolkit_pins()
    except PackageNotFoundError:
        toolkit = {}
    ours = requirement_pins()
    tk_rows = [{"package": n, "toolkit requires": spec or "any", "workbook pins": ours.get(n, ""), "installed": installed(n)}
               for n, spec in toolkit.items()]
    other = [{"package": n, "workbook pins": spec, "installed": installed(n)} for n, spec in ours.items() if n not in toolkit]
    return tk_rows, other


def install_commands(python: str = "python3.11") -> str:
    """The shell lines that set up (or repair) the environment, shown on every run, passing or not."""
    return "\n".join([
        "# from the repository root: one venv, ONE pip call for every pin (installing a package alone",
        "# can move torch/numpy past the toolkit's pins), then the Jupyter kernel the notebooks use",
        f"{python} -m venv .venv",
        ".venv/bin/pip install -r requirements.txt -e .",
        ".venv/bin/python -m ipykernel install --sys-prefix --name rknn-workbook --display-name 'RKNN workbook (.venv)'",
        "# or simply: make setup",
    ])
