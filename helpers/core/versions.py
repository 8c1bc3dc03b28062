"""The installed rknn-toolkit2's version, read from package metadata without importing the toolkit: the one
reading behind cache keys, convert.json, the option checks of 2.5.0 and the bundle's README."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def toolkit_version() -> str:
    """The installed rknn-toolkit2 version ('' when it is not installed)."""
    try:
        return version("rknn-toolkit2")
    except PackageNotFoundError:
        return ""
