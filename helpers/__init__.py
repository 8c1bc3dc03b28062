"""helpers: the code behind the RKNN deployment workbook's notebooks (see Layout in README.md)."""
from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent

# Nothing may be downloaded at run time: keep ultralytics offline (no settings sync, no hub
# weights, no fonts, no pip auto-install) and keep its settings file inside the git-ignored outputs/.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", str(_REPO / "outputs" / ".config"))
os.environ.setdefault("MPLCONFIGDIR", str(_REPO / "outputs" / ".config" / "matplotlib"))

__version__ = "0.1.0"
