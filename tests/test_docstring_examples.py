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
    "advjax.attacks._apgd",
    "advjax.attacks._deepfool",
    "advjax.attacks._fab",
    "advjax.attacks._square",
    "advjax.attacks._hopskipjump",
    "advjax.attacks._cw",
    "advjax.attacks._ddn",
    "advjax.attacks._jsma",
    "advjax.attacks._mifgsm",
    "advjax.attacks._onepixel",
    "advjax.attacks._universal",
    "advjax.attacks._adaptive",
    "advjax._compile",
    "advjax.evaluation._diagnostics",
    "advjax.evaluation._robustness",
    "advjax.train._state",
    "advjax.train._step",
    "advjax.train._fit",
    "advjax.train._awp",
    "advjax.train._callbacks",
    "advjax.train._certified",
    "advjax.train._checkpoint",
    "advjax.train._distillation",
    "advjax.train._fast",
    "advjax.train._free",
    "advjax.train._mart",
    "advjax.train._objectives",
    "advjax.train._precision",
    "advjax.train._regularizers",
    "advjax.train._schedules",
    "advjax.train._trades",
    "advjax.certify",
    "advjax.certify._certified",
    "advjax.certify._crown",
    "advjax.certify._interval",
    "advjax.certify._jaxpr_interp",
    "advjax.certify._margins",
    "advjax.certify._primitives",
    "advjax.certify._smoothing",
    "advjax.parallel",
    "advjax.parallel._attack",
    "advjax.parallel._batch",
    "advjax.backend._conv",
    "advjax.parallel._distributed",
    "advjax.parallel._mesh",
    "advjax.parallel._precision",
    "advjax.parallel._train",
    "advjax.parallel._cpu",
    "advjax.backend",
    "advjax.models",
    "advjax.models._common",
    "advjax.models._ibp_nets",
    "advjax.models._logits",
    "advjax.models._mnist_nets",
    "advjax.models._registry",
    "advjax.models._resnet",
    "advjax.models._torch_init",
    "advjax.runs",
    "advjax._checks",
    "advjax.cli",
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


@pytest.mark.parametrize(
    "package", ["advjax.backend", "advjax.data", "advjax.losses", "advjax.models"]
)
def test_public_names_have_a_runnable_example(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            doc = obj.__doc__ or ""
            assert "Example:" in doc and ">>> " in doc, f"{package}.{name}"


def test_parallel_public_functions_have_a_runnable_example():
    module = importlib.import_module("advjax.parallel")
    for name in module.__all__:
        obj = getattr(module, name)
        assert inspect.isfunction(obj), name
        assert obj.__doc__ and "Example:" in obj.__doc__, f"advjax.parallel.{name}"
