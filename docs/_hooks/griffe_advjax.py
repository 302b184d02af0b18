"""Griffe extension: read advjax's docstrings as the project writes them.

The docstrings follow Google style as Sphinx's napoleon and autodoc read it, which
griffe reads differently in three places:

- ``Example:`` (singular) is napoleon's alias of ``Examples:``; griffe would render it as
  an admonition whose ``>>>`` lines are Markdown, not code. It becomes ``Examples:``.
- Sphinx roles (``:func:`fit```, ``:class:`~advjax.data.Dataset```) would show as text.
  Each becomes an optional cross-reference: a link to the API entry when the name is
  documented, else the name in code (never a build warning). A bare name is looked up
  in the ``__all__`` of the docstring's own subpackage, then of ``advjax``, then of the one
  subpackage that exports it.
- A module attribute's documentation may be a ``#:`` comment above it, or an assignment
  ``name.__doc__ = "..."`` (``fgm``, a ``functools.partial``); griffe sees neither, and
  without a docstring the API page would leave the name out.

Only the rendered site changes; the source docstrings (and their doctests) are untouched.
"""

from __future__ import annotations

import ast
import html
import inspect
import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.M)
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")


class AdvjaxDocstrings(griffe.Extension):
    """Fills attribute docstrings, rewrites ``Example:`` and Sphinx roles in advjax's docstrings."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        """Rewrite the docstrings once the whole ``advjax`` package is loaded."""
        if pkg.path != "advjax":
            return
        exports = {
            name: set(module.exports or ())
            for name, module in pkg.modules.items()
            if not name.startswith("_")
        }
        exporters: dict[str, list[str]] = {}
        for sub, names in sorted(exports.items()):
            for name in names:
                exporters.setdefault(name, []).append(sub)
        context = (set(pkg.exports or ()), exports, exporters)
        for module in _walk(pkg):
            if module.is_module:
                _borrow_docstrings(module, loader)
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj.docstring.value, obj, context)


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _borrow_docstrings(module: griffe.Module, loader: griffe.GriffeLoader) -> None:
    """Docstrings for attributes from ``#:`` comments and ``name.__doc__ = ...``."""
    assigned = {}
    if module.filepath and not isinstance(module.filepath, list):
        tree = ast.parse(module.filepath.read_text(encoding="utf-8"))
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(target := node.targets[0], ast.Attribute)
                and target.attr == "__doc__"
                and isinstance(target.value, ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                assigned[target.value.id] = (node.value.value, node.lineno, node.end_lineno)
    lines = module.lines
    for attribute in module.attributes.values():
        if attribute.is_alias or attribute.docstring is not None:
            continue
        if attribute.name in assigned:
            text, start, end = assigned[attribute.name]
        else:
            start = end = attribute.lineno or 0
            comments = []
            while start > 1 and lines[start - 2].lstrip().startswith("#:"):
                start -= 1
                comments.insert(0, lines[start - 1].lstrip()[2:].strip())
            if not comments:
                continue
            text, end = "\n".join(comments), start + len(comments) - 1
        attribute.docstring = griffe.Docstring(
            inspect.cleandoc(text),
            lineno=start,
            endlineno=end,
            parent=attribute,
            parser=loader.docstring_parser,
            parser_options=loader.docstring_options,
        )


def _subpackage(path: str) -> str | None:
    parts = path.split(".")
    return parts[1] if len(parts) > 1 else None


def _identifiers(target: str, obj: griffe.Object, context) -> tuple[str, str | None]:
    """The identifier to link to and a fallback."""
    top, exports, exporters = context
    sub = _subpackage(obj.path)
    head, _, rest = target.partition(".")
    if head == "advjax":
        parts = target.split(".")
        # advjax.<sub>._module.name -> advjax.<sub>.name when the subpackage exports it
        if len(parts) >= 4 and parts[2].startswith("_") and parts[3] in exports.get(parts[1], ()):
            return ".".join([*parts[:2], *parts[3:]]), target
        return target, None
    suffix = f".{rest}" if rest else ""
    if sub in exports and head in exports[sub]:
        return f"advjax.{sub}.{head}{suffix}", None
    if head in top:
        return f"advjax.{head}{suffix}", None
    if len(exporters.get(head, ())) == 1:
        return f"advjax.{exporters[head][0]}.{head}{suffix}", None
    owner = obj if obj.is_class else obj.parent
    if owner is not None and owner.is_class:  # a method or attribute of the same class
        return f"{owner.path}.{target}", f"{obj.module.path}.{target}"
    return f"{obj.module.path}.{target}", None


def _rewrite(text: str, obj: griffe.Object, context) -> str:
    text = _EXAMPLE.sub(r"\1Examples:", text)

    def role(match: re.Match) -> str:
        tilde, target = match.groups()
        target = target.strip().removesuffix("()")
        shown = target.rsplit(".", 1)[-1] if tilde else target
        identifier, fallback = _identifiers(target, obj, context)
        slug = f' slug="{html.escape(fallback)}"' if fallback else ""
        return (
            f'<autoref identifier="{html.escape(identifier)}"{slug} optional>'
            f"<code>{html.escape(shown)}</code></autoref>"
        )

    return _ROLE.sub(role, text)
