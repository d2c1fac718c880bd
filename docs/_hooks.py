"""MkDocs hook: one narrow log filter for the strict build.

Docstrings carry doctest lines such as ``>>> variables["params"]["kernel"].shape``. Markdown
reads ``["params"]["kernel"]`` as a reference link, and mkdocs-autorefs warns that the target
``"kernel"`` does not exist, which ``--strict`` turns into an error. A quoted target is always
such a subscript, never a cross-reference, so exactly those warnings are dropped; every other
warning still fails the build.
"""
from __future__ import annotations

import logging
import re

_SUBSCRIPT = re.compile(r"Could not find cross-reference target '[\"'].*[\"']'")


class _DropSubscriptRefs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _SUBSCRIPT.search(record.getMessage())


def on_config(config, **kwargs):
    # On mkdocs' handlers (its warning counter among them): records propagate to them from the
    # plugin's own logger, whose name is private to mkdocs-autorefs.
    for handler in logging.getLogger("mkdocs").handlers:
        if not any(isinstance(f, _DropSubscriptRefs) for f in handler.filters):
            handler.addFilter(_DropSubscriptRefs())
    return config
