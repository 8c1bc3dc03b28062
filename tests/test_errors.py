"""helpers.core.errors: the one ANSI stripper every module uses on the toolkit's coloured log."""
from __future__ import annotations

from helpers.core.errors import strip_ansi


def test_strip_ansi_removes_colour_and_cursor_codes_only():
    coloured = "\x1b[1;31mE build: \x1b[0mThe model \x1b[Khas [3] outputs"
    assert strip_ansi(coloured) == "E build: The model has [3] outputs"
    assert strip_ansi("plain [1;31m text") == "plain [1;31m text"  # brackets without ESC stay
