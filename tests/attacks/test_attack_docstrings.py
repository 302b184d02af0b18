"""Every public function and class of the attack modules documents a runnable example.

The examples themselves run in ``tests/test_docstring_examples.py``.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "_adaptive",
    "_apgd",
    "_core",
    "_cw",
    "_ddn",
    "_deepfool",
    "_ead",
    "_fab",
    "_fgsm",
    "_guard",
    "_hopskipjump",
    "_jsma",
    "_mifgsm",
    "_onepixel",
    "_pgd",
    "_square",
    "_threat",
    "_universal",
]

ATTACKS = [
    "apgd", "apgd_t", "bim", "cw_l2", "ddn", "deepfool", "ead", "fab", "fgsm", "hopskipjump",
    "jsma", "mifgsm", "one_pixel", "pgd", "square", "universal_perturbation",
]  # fmt: skip


def _public(module):
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) == module.__name__:
            yield name, obj


@pytest.mark.parametrize("name", MODULES)
def test_public_names_have_a_runnable_example(name):
    module = importlib.import_module(f"advjax.attacks.{name}")
    for public, obj in _public(module):
        doc = obj.__doc__ or ""
        assert "Example:" in doc and ">>> " in doc, f"advjax.attacks.{name}.{public}"


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_factories_document_args_returns_raises_and_the_paper(name):
    doc = getattr(importlib.import_module("advjax.attacks"), name).__doc__
    for section in ("Args:", "Returns:", "Raises:", "Example:", "arXiv:"):
        assert section in doc, f"{name} lacks {section}"
