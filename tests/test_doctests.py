"""Every ``>>>`` example in pixelfold's docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest
import torch

import pixelfold


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(pixelfold.__path__, "pixelfold."):
        origin = importlib.util.find_spec(info.name).origin
        if origin and ">>>" in Path(origin).read_text(encoding="utf-8"):
            names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_the_examples_are_found():
    assert len(MODULES) >= 10, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    torch.manual_seed(0)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    examples = 0
    for test in finder.find(module, globs={"torch": torch, **vars(module)}):
        examples += len(test.examples)
        runner.run(test, out=lambda text: None)
    result = runner.summarize(verbose=False)
    assert examples > 0
    assert result.failed == 0, f"{result.failed} of {examples} examples of {name} failed"
