""".ci/run stops only the adb server it started, with adb's own kill-server (never pkill by name)."""
from __future__ import annotations

import socket
import subprocess

import pytest

from helpers.core.paths import REPO

SCRIPT = (REPO / ".ci" / "run").read_text()


def functions() -> str:
    """The adb helpers of .ci/run, without its install and test steps."""
    start = SCRIPT.index("adb_listening()")
    return SCRIPT[start:SCRIPT.index("trap stop_our_adb EXIT")]


@pytest.fixture
def adb_port_open():
    """Port 5037 listening (an adb server, or this stand-in socket when none runs)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", 5037))
            s.listen()
        except OSError:
            pass  # a real adb server already listens: fine, the fake adb below is what gets called
        yield


@pytest.mark.parametrize("before, stopped", [("yes", False), ("no", True)])
def test_stops_adb_only_when_ci_started_it(tmp_path, adb_port_open, before, stopped):
    fake = tmp_path / "bin" / "adb"  # stands in for the adb binary: records how it was called
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'calls'}\n")
    fake.chmod(0o755)
    script = f"{functions()}\nADB_BEFORE={before}\nstop_our_adb\n"
    subprocess.run(["bash", "-c", script], cwd=tmp_path, env={"PATH": f"{fake.parent}:/usr/bin:/bin"}, check=True)
    calls = (tmp_path / "calls").read_text().split("\n") if (tmp_path / "calls").exists() else []
    assert ("kill-server" in calls) == stopped
    assert "pkill" not in SCRIPT and "killall" not in SCRIPT
