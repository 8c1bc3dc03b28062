"""Which chip a .rknn was built for and which chip the board is, the chips that share one NPU, and the NPU
core masks of each chip: shipped in the deployment bundle beside run_rknn.py (standard library only), and
used by the workbook itself (notebook 40, the bundle's README) so both say the same."""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any, Dict, List, Optional

# --core-mask names -> the RKNNLite / RKNN class attribute holding the mask value.
CORE_MASKS = {
    "auto": "NPU_CORE_AUTO", "0": "NPU_CORE_0", "1": "NPU_CORE_1", "2": "NPU_CORE_2",
    "0_1": "NPU_CORE_0_1", "0_1_2": "NPU_CORE_0_1_2", "all": "NPU_CORE_ALL",
}
# Which masks each multi-core chip accepts; every other chip has one NPU core (only "auto").
CORE_MASKS_BY_CHIP = {
    "rk3588": set(CORE_MASKS),
    "rk3576": {"auto", "0", "1", "0_1", "all"},
}
# Chips that share one NPU, so a model built for one runs on the other. Sources: the RKNN-Toolkit-Lite2
# examples ship a single "rk3566_rk3568" model for both chips and treat every rk3588 variant (rk3588s)
# as rk3588; the rknn-toolkit2 README lists RV1103/RV1106 and RV1103B/RV1106B as one series each.
NPU_FAMILY = {
    "rk3566": "rk3566/rk3568", "rk3568": "rk3566/rk3568",
    "rk3588": "rk3588", "rk3588s": "rk3588",
    "rv1103": "rv1103/rv1106", "rv1106": "rv1103/rv1106",
    "rv1103b": "rv1103b/rv1106b", "rv1106b": "rv1103b/rv1106b",
}
TOOLKIT_NAME = {"rk3588s": "rk3588"}  # chip variants the toolkit knows under another target_platform name
_CHIP = re.compile(r"^((?:rk|rv)\d{4}[a-z]?)(?:-|$)")


class RunnerError(Exception):
    """Bad input or a missing piece on the board: the message is one sentence with the fix."""


def rknn_meta(path: str | Path) -> Dict[str, Any]:
    """The JSON description embedded in a .rknn file (holds "target_platform" and "version").

    Layout seen in files written by rknn-toolkit2 2.x: b"RKNN" magic, a 64-byte header whose
    little-endian u64 at offset 16 is the size of the compiled model, the model, then a u64 length
    and that many bytes of JSON. Anything else raises RunnerError.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunnerError(f"Cannot read model file {path} ({exc.strerror}); pass --model an existing .rknn file.") from None
    if data[:4] != b"RKNN" or len(data) < 72:
        raise RunnerError(f"{path} is not an RKNN model (no 'RKNN' header); pass the .rknn exported by rknn-toolkit2.")
    (model_size,) = struct.unpack_from("<Q", data, 16)
    at = 64 + model_size
    if at + 8 <= len(data):
        (json_size,) = struct.unpack_from("<Q", data, at)
        blob = data[at + 8 : at + 8 + json_size]
        if json_size and len(blob) == json_size:
            try:
                return json.loads(blob.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                pass
    raise RunnerError(f"{path} has an RKNN header but no readable model description; re-export it with rknn-toolkit2 2.x.")


def rknn_platform(path: str | Path) -> str:
    """The chip a .rknn was built for (e.g. 'rk3588'), read from the file itself."""
    meta = rknn_meta(path)
    plats = meta.get("target_platform")
    if isinstance(plats, list) and plats and isinstance(plats[0], str):
        return plats[0].lower()
    if isinstance(plats, str) and plats:
        return plats.lower()
    raise RunnerError(f"{path} does not record its target platform; re-export it with rknn-toolkit2 2.x.")


def npu_family(chip: str) -> str:
    """The NPU a chip carries ('rk3568' -> 'rk3566/rk3568'); a chip not listed is its own family."""
    return NPU_FAMILY.get(chip.lower(), chip.lower())


def board_platform(compatible: str | Path = "/proc/device-tree/compatible") -> Optional[str]:
    """The Rockchip chip this program runs on, from the device tree ('rk3588'), or None off-board.

    Every 'rockchip,<chip>[-board]' entry is looked at (boards list e.g. 'rockchip,rk3588-evb1-v10'
    before 'rockchip,rk3588'). Variants are named as the toolkit names them (rk3588s -> rk3588).
    """
    try:
        entries = Path(compatible).read_bytes().split(b"\0")
    except OSError:
        return None
    chips: List[str] = []
    for entry in entries:
        vendor, _, rest = entry.decode("ascii", "ignore").strip().lower().partition(",")
        found = _CHIP.match(rest) if vendor == "rockchip" else None
        if found and found.group(1) not in chips:
            chips.append(found.group(1))
    known = [c for c in chips if c in NPU_FAMILY] or chips
    return TOOLKIT_NAME.get(known[0], known[0]) if known else None


def check_platform(model_platform: str, chip: Optional[str], model: Path) -> None:
    """A model runs on the chips that share the NPU it was built for; say how to rebuild it otherwise."""
    if chip is not None and npu_family(chip) != npu_family(model_platform):
        raise RunnerError(
            f"{model.name} was built for {model_platform} but this board is {chip}; "
            f"convert again with target_platform='{chip}' (notebook 20) and copy the new bundle."
        )


def check_core_mask(name: str, platform: str) -> None:
    """Multi-core masks exist on rk3588 (3 cores) and rk3576 (2 cores) only."""
    allowed = CORE_MASKS_BY_CHIP.get(platform, {"auto"})
    if name not in allowed:
        raise RunnerError(f"--core-mask {name} is not available on {platform}; use one of {', '.join(sorted(allowed))}.")


def core_mask_meaning(name: str, platform: str) -> str:
    """What a core mask name does on this chip, in words (the same words in the workbook and here)."""
    if name == "auto":
        return "one idle core, picked by the runtime" if platform in CORE_MASKS_BY_CHIP else "the chip's single NPU core"
    if name == "all":
        return "all NPU cores together"
    cores = name.split("_")
    return f"core {cores[0]}" if len(cores) == 1 else f"cores {', '.join(cores[:-1])} and {cores[-1]} together"


def core_mask_value(cls: Any, name: str, platform: str) -> int:
    """The mask constant for --core-mask on this chip, read from the RKNNLite (or RKNN) class."""
    check_core_mask(name, platform)
    return int(getattr(cls, CORE_MASKS[name]))
