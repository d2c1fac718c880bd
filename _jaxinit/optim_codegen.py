"""Write the optimizer registry's lists into the files that show them.

    python -m _jaxinit.optim_codegen          # rewrite the generated blocks
    python -m _jaxinit.optim_codegen --check  # exit 1 if one is out of date

From ``_jaxinit/optim_registry.py`` (one entry per torch optimizer) it writes, between
``BEGIN generated: optimizers`` / ``END generated: optimizers`` marker lines:

* ``jaxinit/optim.py``: the imports of every factory and JAX-only name, their part of
  ``__all__`` and of ``TRANSFORMS``;
* ``torchinit/optim.py``: the imports of every factory and their part of ``__all__``;
* ``docs/optimizers.md``: the table of all optimizers.

The blocks stay literal Python (IDEs, type checkers and ``help()`` read them without
importing). ``parity_tests/test_optim_db.py`` checks they are up to date.
"""
from __future__ import annotations

import pathlib
import re
import sys

from _jaxinit import optim_registry as registry

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "BEGIN generated: optimizers", "END generated: optimizers"


def _imports(package: str) -> list[str]:
    out = []
    for o in registry.OPTIMIZERS:
        module = o.jax_module if package == "jaxinit" else o.torch_module
        names = (o.factory, *o.jax_names) if package == "jaxinit" else (o.factory,)
        out += [f"from {module} import {n} as {n}" for n in names]
    return out


def _names(names) -> list[str]:
    return [f'    "{n}",' for n in names]


def blocks(path: str) -> list[list[str]]:
    """The generated blocks of ``path``, in file order (each a list of lines, markers excluded)."""
    factories = [o.factory for o in registry.OPTIMIZERS]
    if path == "jaxinit/optim.py":
        return [_imports("jaxinit"), _names(registry.JAX_ONLY_NAMES), _names(factories)]
    if path == "torchinit/optim.py":
        return [_imports("torchinit"), _names(factories)]
    if path == "docs/optimizers.md":
        return [registry.docs_table().rstrip("\n").split("\n")]
    raise KeyError(path)


TARGETS = ("jaxinit/optim.py", "torchinit/optim.py", "docs/optimizers.md")
_MARK = re.compile(rf"^(?P<indent>[ \t]*)(?P<lead>#|<!--) {BEGIN}.*?$\n(?P<body>.*?)^[ \t]*(?:#|<!--) {END}.*?$",
                   re.M | re.S)


def render(path: str) -> str:
    text = (ROOT / path).read_text()
    new = iter(blocks(path))
    count = 0

    def fill(m: re.Match) -> str:
        nonlocal count
        count += 1
        head, tail = m[0].split("\n", 1)[0], m[0].rsplit("\n", 1)[1]
        return head + "\n" + "".join(line + "\n" for line in next(new)) + tail

    out = _MARK.sub(fill, text)
    if count != len(blocks(path)):
        raise ValueError(f"{path}: expected {len(blocks(path))} '{BEGIN}' blocks, found {count}")
    return out


def main(argv: list[str]) -> int:
    stale = []
    for path in TARGETS:
        text = render(path)
        if (ROOT / path).read_text() == text:
            continue
        stale.append(path)
        if "--check" not in argv:
            (ROOT / path).write_text(text)
    if "--check" in argv and stale:
        print("out of date (run python -m _jaxinit.optim_codegen):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
