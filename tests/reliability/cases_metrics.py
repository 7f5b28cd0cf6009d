"""Cases of the metrics: ``pixelfold eval``, weights files, statistics."""

from __future__ import annotations

from . import Case  # noqa: F401

CASES: list = []
