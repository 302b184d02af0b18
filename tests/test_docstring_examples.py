"""Every module's docstring examples run, and every public name shows a runnable example.

Modules are discovered by walking the ``advjax`` package, so a new module's
examples run without anyone adding it to a list.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re

import pytest

import advjax

_SKIPPED = {
    "advjax.__main__",  # runs the command line on import
    "advjax.data._build_embedded",  # a maintainer's build script, not an API
}
_WALK = [
    info
    for info in pkgutil.walk_packages(advjax.__path__, prefix="advjax.")
    if info.name not in _SKIPPED
]
MODULES = sorted(info.name for info in _WALK) + ["advjax"]
PACKAGES = sorted(info.name for info in _WALK if info.ispkg) + ["advjax"]


def test_the_walk_finds_the_packages_and_their_modules():
    assert {"advjax.attacks._pgd", "advjax.certify._crown", "advjax.defenses._jpeg"} <= set(MODULES)
    assert {"advjax.attacks", "advjax.evaluation", "advjax.backend"} <= set(PACKAGES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def _public_objects(package):
    module = importlib.import_module(package)
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield f"{package}.{name}", obj


_RUNNABLE = re.compile(r"^\s*>>> (?!#)\S", re.M)  # a prompt with code, not a comment


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_a_runnable_example(package):
    missing = [
        name
        for name, obj in _public_objects(package)
        if "Example" not in (obj.__doc__ or "") or not _RUNNABLE.search(obj.__doc__ or "")
    ]
    assert missing == []


def test_the_example_check_refuses_a_commented_out_example():
    assert not _RUNNABLE.search("Example:\n  >>> # f(x)\n")
    assert _RUNNABLE.search("Example:\n  >>> f(x)\n")
