"""Resolve requirements.txt for another Python version without its interpreter (nothing is installed).

`pip install --dry-run --python-version X` checks wheels and Requires-Python for X but evaluates environment
markers (`; python_version < "3.11"`, in our pins and in every dependency's metadata) for the Python running
pip. This runs pip with its marker environment set to X as well, so the answer is the one a machine with
Python X would get.

    .venv/bin/python tests/resolve_requirements.py 3.10 3.12     # exit 0 when every version resolves
    .venv/bin/python tests/resolve_requirements.py --into DIR 3.10 3.12   # each answer into DIR/<version>.json
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the manylinux tags an x86-64 Linux with glibc >= 2.34 accepts (Ubuntu 22.04, the tutorial's system, and newer)
PLATFORMS = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_24_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64", "manylinux_2_34_x86_64", "linux_x86_64"]
# Run inside the child: pip's vendored `packaging` answers markers from this function.
_PIP_AS = """
import sys
from pip._vendor.packaging import markers
version = sys.argv[1]
real = markers.default_environment
markers.default_environment = lambda: {**real(), "python_version": version, "python_full_version": version + ".0"}
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:] + ["--python-version", version]))
"""


def command(version: str, requirements: Path, target: Path) -> list[str]:
    """The pip call that resolves `requirements` for Python `version` into a dry run (wheels only)."""
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    return [sys.executable, "-c", _PIP_AS, version, "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
            "--disable-pip-version-check", "--retries", "10", "--timeout", "60", *platforms, "--target", str(target),
            "-r", str(requirements)]


def start(version: str, requirements: Path = REPO / "requirements.txt") -> tuple[subprocess.Popen, tempfile.TemporaryDirectory]:
    """Start resolving for one version (several can run side by side: the work is mostly downloads)."""
    scratch = tempfile.TemporaryDirectory(prefix=f"resolve-{version}-")
    proc = subprocess.Popen(command(version, requirements, Path(scratch.name)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return proc, scratch


def would_install(pip_output: str) -> dict[str, str]:
    """{'torch': '2.4.0', ...} from pip's 'Would install name-version ...' line."""
    line = next((ln for ln in pip_output.splitlines() if ln.startswith("Would install ")), "")
    pairs = (item.rsplit("-", 1) for item in line.split()[2:])
    return {name.lower().replace("_", "-"): version for name, version in pairs}


def crashed(pip_output: str) -> bool:
    """pip stopped on an exception of its own (a dropped or timed-out download prints 'ERROR: Exception:' and a
    traceback), not on an answer about the pins (those are 'ERROR: Could not find ...', 'ResolutionImpossible')."""
    return "ERROR: Exception:" in pip_output


def why(pip_output: str) -> str:
    """pip's own error lines, and the last line of its traceback when it crashed (the exception that stopped it)."""
    lines = pip_output.splitlines()
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    if crashed(pip_output):
        errors.append(next((ln for ln in reversed(lines) if ln.strip()), ""))
    return "; ".join(errors) or pip_output[-1500:]


def _finish(proc: subprocess.Popen, scratch: tempfile.TemporaryDirectory) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=1800)
    scratch.cleanup()
    return proc.returncode, out


def resolve(versions: list[str]) -> dict[str, tuple[int, str]]:
    """{version: (pip's exit code, its output)} for each Python version, resolved side by side. A resolution that
    ended in a crash of pip itself (the network, not the pins) runs once more, alone, before its answer counts."""
    running = {v: start(v) for v in versions}
    results = {version: _finish(*started) for version, started in running.items()}
    for version, (code, out) in results.items():
        if code != 0 and crashed(out):
            results[version] = _finish(*start(version))
    return results


def start_into(folder: Path, versions: list[str]) -> subprocess.Popen:
    """Resolve in a background process that writes each answer to folder/<version>.json once complete: conftest
    starts it when the session begins (in the main process of a pytest -n run), the test reads the files (read_into)."""
    return subprocess.Popen([sys.executable, __file__, "--into", str(folder), *versions], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def read_into(folder: Path, versions: list[str], timeout: float = 1800) -> dict[str, tuple[int, str]]:
    """{version: (pip's exit code, its output)} from start_into's files, waiting for them."""
    deadline = time.monotonic() + timeout
    while not all((folder / f"{v}.json").exists() for v in versions) and time.monotonic() < deadline:
        time.sleep(1)
    return {v: tuple(json.loads((folder / f"{v}.json").read_text())) if (folder / f"{v}.json").exists()
            else (-1, f"no answer within {timeout:.0f} s") for v in versions}


def _write_into(folder: Path, versions: list[str]) -> None:
    from helpers.core.paths import write_text_atomic

    for version, answer in resolve(versions).items():
        write_text_atomic(folder / f"{version}.json", json.dumps(answer))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--into"]:
        _write_into(Path(sys.argv[2]), sys.argv[3:])
        sys.exit(0)
    failed = 0
    for version, (code, out) in resolve(sys.argv[1:] or ["3.10", "3.11", "3.12"]).items():
        pins = would_install(out)
        if code == 0:
            print(f"Python {version}: resolves (torch {pins.get('torch')}, numpy {pins.get('numpy')}, "
                  f"rknn-toolkit2 {pins.get('rknn-toolkit2')})")
        else:
            failed += 1
            print(f"Python {version}: does not resolve: {why(out)}")
    sys.exit(1 if failed else 0)
