"""Write the optimizer registry's lists into the files that show them.

    python -m _jaxinit.optim_codegen          # rewrite the generated blocks
    python -m _jaxinit.optim_codegen --check  # exit 1 if one is out of date

From ``_jaxinit/optim_registry.py`` (one entry per torch optimizer) it writes, between
``BEGIN generated: optimizers`` / ``END generated: optimizers`` marker lines:

* ``jaxinit/optim.py``: the imports of every factory and JAX-only name, their part of
  ``__all__`` and of ``TRANSFORMS``;
* ``torchinit/optim.py``: the imports of every factory and their part of ``__all__``;
* ``torchinit/_src/optim_factories.py`` (the whole file): the torchinit factory of every entry
  with ``torch_factory_generated``, from the jaxinit factory's signature (read from its source
  with :mod:`ast`, so no framework is imported);
* ``docs/optimizers.md``: the table of all optimizers; ``docs/api/*_optim.md``: their API entries;
* the ``from_torch`` docstrings: the sentence naming the classes converted (after ``DOC_ANCHOR``).

The blocks stay literal Python (IDEs, type checkers and ``help()`` read them without
importing). ``parity_tests/test_optim_db.py`` checks they are up to date.
"""
from __future__ import annotations

import ast
import pathlib
import re
import sys
import textwrap

from _jaxinit import optim_registry as registry
from _jaxinit.schedules_codegen import write_or_check

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "BEGIN generated: optimizers", "END generated: optimizers"


def _imports(package: str) -> list[str]:
    out = []
    for o in registry.OPTIMIZERS:
        module = o.module_of(package)
        names = (o.factory, *o.jax_names) if package == "jaxinit" else (o.factory,)
        out += [f"from {module} import {n} as {n}" for n in names]
    return out


def _names(names) -> list[str]:
    return [f'    "{n}",' for n in names]


def _directives(package: str, names) -> list[str]:
    out: list[str] = []
    for n in names:
        out += [f"::: {package}.optim.{n}", ""]
    return out[:-1]


def blocks(path: str) -> list[list[str]]:
    """The generated blocks of ``path``, in file order (each a list of lines, markers excluded)."""
    factories = [o.factory for o in registry.OPTIMIZERS]
    if path == "jaxinit/optim.py":
        return [_imports("jaxinit"), _names(registry.JAX_ONLY_NAMES), _names(factories)]
    if path == "torchinit/optim.py":
        return [_imports("torchinit"), _names(factories)]
    if path == "docs/optimizers.md":
        return [registry.docs_table().rstrip("\n").split("\n")]
    if path == "docs/api/jaxinit_optim.md":
        return [_directives("jaxinit", factories), _directives("jaxinit", registry.JAX_ONLY_NAMES)]
    if path == "docs/api/torchinit_optim.md":
        return [_directives("torchinit", factories)]
    raise KeyError(path)


TORCH_FACTORIES = "torchinit/_src/optim_factories.py"
TARGETS = ("jaxinit/optim.py", "torchinit/optim.py", "docs/optimizers.md", "docs/api/jaxinit_optim.md",
           "docs/api/torchinit_optim.md", "jaxinit/_src/optim_convert.py", "torchinit/_src/optim_convert.py",
           TORCH_FACTORIES)
# from_torch's docstrings: the paragraph after this line lists the converted classes (up to its first ".")
DOC_ANCHOR = "registry, ``_jaxinit/optim_registry.py``):"


def _listed(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1] + "."


def docstring_list(package: str) -> str:
    """The sentence of ``package``'s from_torch docstring naming what it converts (and what it refuses)."""
    if package == "torchinit":  # torch's own LBFGS object is copied as it is
        return _listed([o.torch_class for o in registry.OPTIMIZERS])
    text = _listed(registry.converted_classes())
    for name in registry.refused_classes():
        text += f" {name} is refused with its replacement named."
    return text


def _render_docstring(text: str, package: str) -> str:
    lines = text.split("\n")
    k = next(i for i, ln in enumerate(lines) if ln.rstrip().endswith(DOC_ANCHOR))
    indent = " " * (len(lines[k + 1]) - len(lines[k + 1].lstrip()))
    end = k + 1
    while not lines[end].rstrip().endswith("."):
        end += 1
    while end + 1 < len(lines) and " is refused with its replacement named." in lines[end + 1]:
        end += 1
    body = textwrap.wrap(docstring_list(package), 88 - len(indent), break_on_hyphens=False)
    return "\n".join(lines[:k + 1] + [indent + b for b in body] + lines[end + 1:])
_MARK = re.compile(rf"^(?P<indent>[ \t]*)(?P<lead>#|<!--) {BEGIN}.*?$\n(?P<body>.*?)^[ \t]*(?:#|<!--) {END}.*?$",
                   re.M | re.S)


def _jax_signature(o: registry.Optimizer) -> list[tuple[str, str, str]]:
    """``(name, annotation, default)`` source text of each argument of the jaxinit factory of ``o``."""
    source = (ROOT / "jaxinit" / "_src" / f"{o.module}.py").read_text()
    fn = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == o.factory)
    args = fn.args
    if args.posonlyargs or args.kwonlyargs or args.vararg or args.kwarg or len(args.defaults) != len(args.args):
        raise ValueError(f"jaxinit.optim.{o.factory}: a generated torch factory needs plain arguments with defaults")
    out = []
    for a, d in zip(args.args, args.defaults):
        note = "Any" if a.annotation is None else ast.unparse(a.annotation)
        out.append((a.arg, "Any" if note == "ScalarOrSchedule" else note, ast.get_source_segment(source, d) or ""))
    return out


def _wrapped(head: str, items: list[str], tail: str, indent: str) -> list[str]:
    """``head + ', '.join(items) + tail`` broken after commas within 120 columns."""
    lines, line = [], head
    for k, item in enumerate(items):
        piece = item + (", " if k < len(items) - 1 else tail)
        if len(line) + len(piece.rstrip()) > 120 and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += piece
    return lines + [line]


def torch_factories() -> str:
    """The text of ``torchinit/_src/optim_factories.py``."""
    out = ["# GENERATED by `python -m _jaxinit.optim_codegen` from _jaxinit/optim_registry.py (entries with",
           "# torch_factory_generated) and the signatures of their jaxinit factories: edit those, not this file.",
           '"""The torchinit factories that are torch\'s class called with the jaxinit factory\'s arguments."""',
           "from __future__ import annotations", "", "from typing import Any, Iterable", "", "import torch", "",
           "from _jaxinit import optim as _core",
           "from torchinit._src.optim_common import build_optimizer, split_schedules"]
    for o in registry.OPTIMIZERS:
        if not o.torch_factory_generated:
            continue
        sig = _jax_signature(o)
        head = f"def {o.factory}("
        out += ["", ""] + _wrapped(head, ["params: Iterable"] + [f"{n}: {a} = {d}" for n, a, d in sig],
                                   ") -> torch.optim.Optimizer:", " " * len(head))
        out.append(f'    """``torch.optim.{o.torch_class}`` (foreach); ``lr`` may be a schedule. Mirror of '
                   f':func:`jaxinit.optim.{o.factory}`."""')
        out += _wrapped(f'    _core.check("{o.factory}", ', [f"{n}={n}" for n, _, _ in sig], ")", " " * 16)
        out.append("    params, lr, scheds = split_schedules(params, lr)")
        passed = [f"{n}=tuple({n})" if a == "tuple" else f"{n}={n}" for n, a, _ in sig if n != "lr"]
        out += _wrapped("    return build_optimizer(", [f"torch.optim.{o.torch_class}", "params", "lr", "scheds"]
                        + passed + ["foreach=True"], ")", " " * 27)
    return "\n".join(out) + "\n"


def render(path: str) -> str:
    if path == TORCH_FACTORIES:
        return torch_factories()
    text = (ROOT / path).read_text()
    if path.endswith("optim_convert.py"):
        return _render_docstring(text, path.split("/")[0])
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
    return write_or_check({ROOT / path: render(path) for path in TARGETS}, argv, "python -m _jaxinit.optim_codegen")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
