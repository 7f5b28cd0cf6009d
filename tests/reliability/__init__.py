"""Bad inputs and faults, as a user meets them, with the outcome pixelfold promises.

Every [`Case`][tests.reliability.Case] runs a command line in-process (the ``pixelfold`` CLI, or
``train`` for the recipes' trainer command line) in a fresh folder, after an optional ``setup``,
and its outcome is checked by ``tests/test_reliability.py``: the exit status, the last line of
stderr (``PROG: error: MESSAGE`` for a user error, never a traceback), and what is on disk
afterwards (``check``). ``docs/reliability.md`` lists the same cases in a table generated from
these definitions (``python docs/scripts/reliability_table.py``); the test also checks that the
page is current, so the table in the docs is what the tests ran.

Add a case to the module of its area (``cases_*.py``): it shows up in the docs and is run by
the test.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Case", "all_cases", "run_case"]


@dataclass(frozen=True)
class Case:
    """One bad input or fault and its promised outcome.

    Args:
        name: short unique id (also the pytest id).
        area: section of the table ("loading", "training", "generate", ...).
        what: the bad input, as a user would describe it (one sentence, Markdown).
        argv: the command line: ``["pixelfold", ...]`` or ``["train", ...]``; a callable gets
            the case's folder and returns it. The command runs with that folder as the
            working directory.
        status: the expected exit status (2 for a user error, 130 for an interruption, 0 for
            success).
        message: a regular expression the last line of stderr must match (searched).
        leaves: what is on disk afterwards, for the table (one sentence, Markdown).
        setup: prepares the folder before the command runs.
        check: asserts on the folder after the command ran.
        env: environment variables set while it runs.
    """

    name: str
    area: str
    what: str
    argv: Sequence[str] | Callable[[Path], Sequence[str]]
    status: int
    message: str
    leaves: str
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)


def all_cases() -> list[Case]:
    """Every case of every ``cases_*.py`` module of this package, in table order."""
    import importlib
    import pkgutil

    cases: list[Case] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cases_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            cases.extend(module.CASES)
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"duplicate case names: {sorted(dupes)}")
    return cases


def run_case(case: Case, folder: Path) -> tuple[int, str, str]:
    """Run ``case`` in ``folder``: returns (status, stdout, stderr)."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    if case.setup is not None:
        case.setup(folder)
    argv = list(case.argv(folder) if callable(case.argv) else case.argv)
    out, err = io.StringIO(), io.StringIO()
    old_env = {k: os.environ.get(k) for k in case.env}
    old_cwd = os.getcwd()
    try:
        os.environ.update(case.env)
        os.chdir(folder)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = _dispatch(argv)
    finally:
        os.chdir(old_cwd)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return status, out.getvalue(), err.getvalue()


def _dispatch(argv: list[str]) -> int:
    if argv[0] == "pixelfold":
        from pixelfold.cli import main

        return main(argv[1:])
    if argv[0] == "train":
        from accelerate.state import AcceleratorState, GradientState

        from pixelfold.training.cli import main as train_main

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        try:
            return train_main(argv[1:], prog="train")
        finally:
            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()
    raise ValueError(f"unknown program {argv[0]!r}")


def last_line(text: str) -> str:
    """The last non-empty line of ``text``."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def matches(case: Case, status: int, stderr: str) -> list[str]:
    """What is wrong with an outcome (empty when it is the promised one)."""
    problems = []
    if status != case.status:
        problems.append(f"exit status {status}, expected {case.status}")
    if "Traceback (most recent call last)" in stderr:
        problems.append("a traceback on stderr")
    if not re.search(case.message, last_line(stderr)):
        problems.append(f"last stderr line {last_line(stderr)!r} does not match "
                        f"{case.message!r}")
    return problems
