"""The runnable examples in the core modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

MODULES = [
    "advjax",
    "advjax.losses._losses",
    "advjax.attacks._threat",
    "advjax.attacks._pgd",
    "advjax.attacks._fgsm",
    "advjax.attacks._transforms",
    "advjax.attacks._core",
    "advjax.attacks._guard",
    "advjax._compile",
    "advjax.evaluation._diagnostics",
    "advjax.evaluation._robustness",
    "advjax.train._state",
    "advjax.train._step",
    "advjax.train._fit",
    "advjax.parallel",
    "advjax.parallel._attack",
    "advjax.parallel._batch",
    "advjax.backend._conv",
    "advjax.parallel._distributed",
    "advjax.parallel._mesh",
    "advjax.parallel._precision",
    "advjax.parallel._train",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize(
    "package", ["advjax", "advjax.attacks", "advjax.evaluation", "advjax.train"]
)
def test_public_names_are_documented(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, f"{package}.{name} has no docstring"


def test_parallel_public_functions_have_a_runnable_example():
    module = importlib.import_module("advjax.parallel")
    for name in module.__all__:
        obj = getattr(module, name)
        assert inspect.isfunction(obj), name
        assert obj.__doc__ and "Example:" in obj.__doc__, f"advjax.parallel.{name}"
