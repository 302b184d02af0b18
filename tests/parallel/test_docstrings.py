"""The runnable examples in advjax.parallel's docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

MODULES = [
    "advjax.parallel",
    "advjax.parallel._attack",
    "advjax.parallel._batch",
    "advjax.parallel._conv",
    "advjax.parallel._distributed",
    "advjax.parallel._mesh",
    "advjax.parallel._precision",
    "advjax.parallel._train",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_names_are_documented_with_an_example():
    module = importlib.import_module("advjax.parallel")
    for name in module.__all__:
        obj = getattr(module, name)
        assert inspect.isfunction(obj), name
        assert obj.__doc__ and "Example:" in obj.__doc__, f"advjax.parallel.{name}"
