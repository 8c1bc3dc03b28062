"""Small helpers for fault tests: damage a file the way a bad copy or a bad disk would."""
from __future__ import annotations

import os
from pathlib import Path


def corrupt_in_place(path: Path) -> None:
    """Flip bytes in the middle of a file and put its size and mtime back (os.utime)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4] = bytes(b ^ 0xFF for b in data[middle:middle + 4])
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
