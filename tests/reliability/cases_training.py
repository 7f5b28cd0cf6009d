"""Cases of training: the recipes' command line, data, run folders, checkpoints, resume."""

from __future__ import annotations

from . import Case  # noqa: F401

CASES: list = []
