"""A .rknn on a real board through the toolkit (load_rknn + init_runtime with a target), one image per call, with
what only a board measures: eval_perf, eval_memory, the runtime's version. Also the device choice it needs and
the reason a board failure gets. Nothing here fabricates a board result: no board is an error."""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from helpers.backends.base import Outputs, ToolkitRunner
from helpers.core.errors import RknnError, WorkbookError, strip_ansi
from helpers.toolkit.session import RKNN, log_tail

if TYPE_CHECKING:  # pandas is imported where it is used
    import pandas as pd

NO_BOARD_HINT = ("connect the board by USB OTG, check that `adb devices` lists it, and start rknn_server on the board "
                 "(checklist: notebooks/40_board_inference.ipynb)")


@contextlib.contextmanager
def explained() -> Iterator[None]:
    """Board failures often reach Python as a bare 'RuntimeError'; re-raise them with the toolkit's own
    'E <call>: ...' reason from the log (e.g. 'no devices/emulators found') and, for device trouble,
    what to check."""
    try:
        yield
    except RknnError as exc:
        text = log_tail(exc.log_path, 400) if exc.log_path else ""
        prefix = f"E {exc.call}:"
        reasons = [ln[len(prefix):].strip() for ln in text.splitlines()
                   if ln.startswith(prefix) and "Traceback" not in ln and ln[len(prefix):].strip()]
        if not reasons:
            raise
        reason = reasons[-1]
        if any(w in reason.lower() for w in ("device", "adb", "rknn_server", "connect")):
            reason += f" ({NO_BOARD_HINT})"
        raise RknnError(exc.call, reason, exc.log_path, exc.log_tail) from exc


@dataclass
class Devices:
    """What `list_devices()` reported: adb serials and ntb ids (both empty without a board)."""

    adb: list[str] = field(default_factory=list)
    ntb: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ids(self) -> list[str]:
        return [*self.adb, *self.ntb]

    @property
    def found(self) -> bool:
        return bool(self.ids)

    def table(self):
        """One row per device (id, transport) as a DataFrame; empty with the right columns when none."""
        import pandas as pd  # slow to import, needed only for this table

        rows = [{"device_id": d, "transport": "adb"} for d in self.adb] + [{"device_id": d, "transport": "ntb"} for d in self.ntb]
        return pd.DataFrame(rows, columns=["device_id", "transport"])

    def status_line(self) -> str:
        """One line for the notebook: what was found, or 'no board found' and what to check."""
        if self.found:
            return f"{len(self.ids)} board(s) found: {', '.join(self.ids)}."
        why = f" (list_devices failed: {self.error})" if self.error else ""
        return f"No board found{why}: {NO_BOARD_HINT}; the board cells below are skipped and the bundle is still built."


def choose_device(devices: Devices, device_id: str = "") -> str | None:
    """The device to use: device_id when it is connected, else the first found, else None (no board).

    A device_id that is not connected is a WorkbookError listing what is connected.
    """
    device_id = (device_id or "").strip()
    if device_id:
        if device_id not in devices.ids:
            have = ", ".join(devices.ids) if devices.ids else "none (no board found)"
            raise WorkbookError(f"device_id={device_id!r} is not connected (connected: {have}); pass one of those ids "
                                "or device_id='' for the first board found.")
        return device_id
    return devices.ids[0] if devices.ids else None


class BoardRunner(ToolkitRunner):
    """The .rknn on the board chosen among the connected ones (device_id, else the first), for a checked target
    and a core mask value (helpers.steps.board.open_board checks them): one image per call (the model has batch 1)."""

    batch = 1

    def __init__(self, rknn_path: str | Path, target: str, core_mask: int, log_path: str | Path, device_id: str = "",
                 perf_debug: bool = False, eval_mem: bool = False, prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                 name: str | None = None):
        self.rknn_path = Path(rknn_path)
        self.target = target
        self.name = name or f"INT8 board ({self.target})"
        self.log_path = Path(log_path)
        self.prepare = prepare

        def setup(rk: RKNN) -> None:
            adb, ntb = rk.list_devices()
            self.device_id = choose_device(Devices(list(adb or []), list(ntb or [])), device_id)
            if self.device_id is None:
                raise WorkbookError(f"No board found for target={self.target!r}; {NO_BOARD_HINT}.")
            rk.load_rknn(str(self.rknn_path))
            with explained():
                rk.init_runtime(target=self.target, device_id=self.device_id, perf_debug=perf_debug,
                                eval_mem=eval_mem, core_mask=core_mask)

        self._open(self.log_path, setup)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One inference on the board, its outputs as float32 (a board failure explained from the log)."""
        with explained():
            return [np.asarray(o, np.float32) for o in super().run(inputs)]

    def split(self, outputs: Sequence[np.ndarray], n: int) -> Outputs:
        """One image's outputs, as the board gives them."""
        return [list(outputs)]

    def _log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def _log_since(self, start: int) -> str:
        with open(self.log_path, "rb") as fh:
            fh.seek(start)
            return strip_ansi(fh.read().decode("utf-8", "replace"))

    def perf(self) -> "Perf":
        """eval_perf on the board: per-layer table (when init_runtime had perf_debug=True) and FPS,
        keeping the returned structure and the table the toolkit printed (from its log) as they are."""
        start = self._log_size()
        with explained():
            raw = self.rk.eval_perf(is_print=True)
        return Perf.from_result(raw, self._log_since(start))

    def memory(self) -> dict[str, Any]:
        """eval_memory on the board (needs init_runtime with eval_mem=True)."""
        with explained():
            return dict(self.rk.eval_memory(is_print=True))

    def sdk_version(self) -> str:
        """Runtime (librknnrt) and driver versions as the board reports them."""
        return str(self.rk.get_sdk_version())


@dataclass
class Perf:
    """What eval_perf returned, kept whole, with a per-layer table and FPS when they can be found in it."""

    raw: Any
    layers: pd.DataFrame | None = None
    total_us: float | None = None
    printed: str = ""  # what eval_perf printed (its own formatted table)

    @property
    def fps(self) -> float | None:
        return 1e6 / self.total_us if self.total_us else None

    @classmethod
    def from_result(cls, raw: Any, printed: str = "") -> "Perf":
        """Look for a list of per-layer records and a total time (us) in the returned structure; when
        the structure has no total, take it from the printed 'Total ... Time(us): N' line."""
        import pandas as pd  # slow to import, needed only for the per-layer table

        layers, total = None, None
        items = raw.items() if isinstance(raw, dict) else []
        for key, value in items:
            if layers is None and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                layers = pd.DataFrame(value)
            if total is None and isinstance(value, (int, float)) and "total" in str(key).lower() and "time" in str(key).lower():
                total = float(value)
        if total is None:
            found = re.findall(r"Total[^\n:]*Time\(us\)\s*:\s*([0-9.]+)", printed)
            total = float(found[-1]) if found else None
        return cls(raw, layers, total, printed)

    def summary(self) -> dict[str, Any]:
        return {"total_us": self.total_us, "fps": self.fps, "layers": None if self.layers is None else len(self.layers),
                "raw": self.raw, "printed": self.printed}
