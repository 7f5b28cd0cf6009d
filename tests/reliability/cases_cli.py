"""Cases of the ``pixelfold`` command line: generate, mix, interpolate, stages, profile, convert."""

from __future__ import annotations

from . import Case

CASES = [
    Case(name="unknown-command", area="pixelfold CLI", what="`pixelfold frobnicate`",
         argv=["pixelfold", "frobnicate"], status=2, message=r"invalid choice: 'frobnicate'",
         leaves="nothing written"),
]
