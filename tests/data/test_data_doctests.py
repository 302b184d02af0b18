import doctest
import importlib

import pytest

MODULES = [
    "advjax.data._errors",
    "advjax.data._dataset",
    "advjax.data._idx",
    "advjax.data._registry",
    "advjax.data._download",
    "advjax.data._cifar",
    "advjax.data._loaders",
    "advjax.data._embedded",
    "advjax.data._batching",
    "advjax.data._map",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, monkeypatch, tmp_path):
    monkeypatch.setenv("ADVJAX_DATA", str(tmp_path))  # examples never touch the real cache
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_api_is_exported_and_documented():
    import advjax.data as ad

    for name in ad.__all__:
        obj = getattr(ad, name)
        if callable(obj):
            assert obj.__doc__, name
    functions = [getattr(ad, n) for n in ad.__all__ if callable(getattr(ad, n))]
    documented = [f for f in functions if "Example:" in (f.__doc__ or "")]
    assert len(documented) >= len(functions) - 4  # a few simple classes carry no example
