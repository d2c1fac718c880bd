"""The documentation cannot rot: its code runs, and the API pages cover the public API.

- Every ```python block of README.md and docs/*.md is executed: the blocks of one file in
  order, in one namespace, with a temporary directory as the working directory (files the
  examples write land there). Blocks that must not run are written ```text or ```bash.
  A block preceded by ``<!-- example: examples/NAME.py -->`` is a copy of that script: it
  must equal the file (the script itself is run by parity_tests/test_examples.py).
- Every public name of both packages and their public submodules (``__all__``) appears in
  an mkdocstrings directive (``::: module.name``) of docs/api/*.md that resolves to the same
  object (optax's docs/ext/coverage_check.py does the same for its Sphinx pages).
- mkdocs.yml's nav names only pages that exist (the strict build itself runs in .ci/run).
"""
from __future__ import annotations

import contextlib
import glob
import importlib
import io
import os
import re
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_FILES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
PUBLIC_MODULES = ("jaxinit", "jaxinit.amp", "jaxinit.data", "jaxinit.linen", "jaxinit.nnx", "jaxinit.optim",
                  "jaxinit.parallel", "jaxinit.random", "jaxinit.rngs",
                  "torchinit", "torchinit.amp", "torchinit.data", "torchinit.nn", "torchinit.optim",
                  "torchinit.parallel", "torchinit.random", "torchinit.rngs")

_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
_EXAMPLE = re.compile(r"<!--\s*example:\s*(?P<path>\S+)\s*-->")


def code_blocks(text: str) -> list[dict]:
    """``[{'lang', 'code', 'line', 'example'}]`` of the fenced blocks of a Markdown text."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, start = len(m["indent"]), i
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^ *```\s*$", lines[i]):
            body.append(lines[i][indent:])
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: the ``` block is never closed")
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        ex = _EXAMPLE.search(prev)
        blocks.append({"lang": m["lang"], "code": "\n".join(body) + "\n", "line": start + 1,
                       "example": ex["path"] if ex else None})
        i += 1
    return blocks


def test_code_blocks_parser():
    text = "x\n```python\na = 1\n```\n<!-- example: e.py -->\n```python\nb\n```\n  ```bash\n  ls\n  ```\n"
    got = code_blocks(text)
    assert [(b["lang"], b["code"], b["line"], b["example"]) for b in got] == [
        ("python", "a = 1\n", 2, None), ("python", "b\n", 6, "e.py"), ("bash", "ls\n", 9, None)]
    with pytest.raises(ValueError, match="never closed"):
        code_blocks("```python\na = 1\n")


def test_doc_files_found():
    assert "README.md" in DOC_FILES and len(DOC_FILES) >= 5, DOC_FILES


@pytest.mark.parametrize("doc", DOC_FILES)
def test_code_blocks_run(doc, tmp_path, monkeypatch):
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        blocks = code_blocks(f.read())
    monkeypatch.chdir(tmp_path)
    # A real module in sys.modules: dataclasses (Linen modules defined in a guide) look it up.
    module = types.ModuleType(f"doc_{os.path.splitext(os.path.basename(doc))[0]}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for b in blocks:
        if b["lang"] != "python":
            continue
        if b["example"]:
            with open(os.path.join(ROOT, b["example"]), encoding="utf-8") as f:
                assert b["code"] == f.read(), (f"{doc}:{b['line']}: the block is not a copy of "
                                               f"{b['example']}; paste the file again")
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(b["code"], f"{doc}:{b['line']}", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"{doc}, the ```python block at line {b['line']} failed: "
                                 f"{type(err).__name__}: {err}") from err


def _directives() -> dict[str, str]:
    """``{'jaxinit.xavier_uniform': 'docs/api/jaxinit.md', ...}``: every ``::: target`` of the API pages."""
    found = {}
    for page in sorted(glob.glob(os.path.join(ROOT, "docs", "api", "*.md"))):
        with open(page, encoding="utf-8") as f:
            for line in f:
                m = re.match(r"^:::\s+([\w.]+)\s*$", line)
                if m:
                    found[m[1]] = os.path.relpath(page, ROOT)
    return found


def _resolve(target: str):
    module, _, name = target.rpartition(".")
    while module:
        try:
            return getattr(importlib.import_module(module), name)
        except ModuleNotFoundError:
            module, _, parent = module.rpartition(".")
            name = f"{parent}.{name}"
    raise AssertionError(f"cannot import {target}")


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_api_pages_cover_public_names(module):
    mod = importlib.import_module(module)
    directives = _directives()
    missing = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        direct = f"{module}.{name}"
        if direct in directives:
            continue
        # Documented under another public name that is the same object (jaxinit.BatchNorm is
        # jaxinit.linen.BatchNorm): accepted only for classes and functions, not shared constants.
        if callable(obj) and any(o is obj for o in map(_resolve, directives)):
            continue
        missing.append(name)
    assert not missing, (f"{module}: public names missing from docs/api/*.md: {missing}; "
                         f"add '::: {module}.<name>' lines to the API page of {module}")


def test_api_directives_resolve():
    bad = []
    for target, page in _directives().items():
        try:
            _resolve(target)
        except (AssertionError, AttributeError) as err:
            bad.append(f"{page}: ::: {target} ({err})")
    assert not bad, bad


def test_nav_pages_exist():
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as f:
        pages = re.findall(r":\s*([\w/.-]+\.md)\s*$", f.read(), flags=re.M)
    assert "index.md" in pages
    missing = [p for p in pages if not os.path.exists(os.path.join(ROOT, "docs", p))]
    assert not missing, f"mkdocs.yml's nav names pages that do not exist: {missing}"


def _section(path: str, heading: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m, f"{path}: no '## {heading}' section"
    return m[1].strip()


def test_front_pages_agree():
    # README.md (GitHub's front page) and docs/index.md (the site's) show the same table and quickstart.
    for heading in ("What is exact, and how it is proven", "Quickstart"):
        assert _section("README.md", heading).split("<!--")[-1] == _section("docs/index.md", heading).split("<!--")[-1], \
            f"'## {heading}' differs between README.md and docs/index.md; copy one into the other"


# ------------------------------------------------------------------ the claims table and the test list

_FIGURE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?e-\d+")
# Every figure of the front pages' claims table, keyed by (the row's first "proven by" entry, figure), tied
# to the constant that asserts it: (file, constant, relation). "==": the table states the test's tolerance;
# "<=": the table states a measured value, which the test's tolerance must bound. A constant is a module-level
# literal (``NAME`` or ``NAME[key]...``) read with ast, or a literal snippet ``"rtol=1e-12"`` of the file.
CLAIMS = {
    ("test_batchnorm.py", "1.8e-14"): ("parity_tests/test_batchnorm.py", "F64_TOL", "<="),
    ("test_optim_db.py", "1e-12"): ("parity_tests/test_optim_db.py", "TOL", "=="),
    ("test_optim_db.py", "6.4e-15"): ("parity_tests/test_optim_db.py", "TOL", "<="),
    ("test_schedules.py", "1e-12"): ("parity_tests/test_schedules.py", "RTOL_PEAK", "=="),
    ("test_schedules.py", "3.2e-13"): ("parity_tests/test_schedules.py", "RTOL_PEAK", "<="),
    ("test_schedules.py", "6e-16"): ("docs/recipe.md", "rtol=1e-12", "<="),
    ("test_convert.py", "3e-14"): ("parity_tests/test_twins.py", "TOL['float64']['out']", "<="),
    ("test_convert.py", "2.8e-13"): ("parity_tests/test_optim_convert.py", "TOL", "<="),
    ("test_convert.py", "4.3e-16"): ("parity_tests/test_training_state.py", "TOL", "<="),
    ("test_porting.py", "2.2e-15"): ("_jaxinit/jax_and_torch/_common.py", "BUDGET_RTOL['float64']", "<="),
    ("test_porting.py", "1.3e-15"): ("_jaxinit/jax_and_torch/_common.py", "BUDGET_RTOL['float64']", "<="),
    ("test_examples.py", "3.5e-4"): ("parity_tests/test_examples.py", "LOSS_TOL", "<="),
    ("test_examples.py", "2e-3"): ("parity_tests/test_examples.py", "LOSS_TOL", "=="),
    ("test_examples.py", "4e-6"): ("parity_tests/test_examples.py", "LOSS_TOL", "<="),
    ("test_checkpoint_io.py", "3.4e-16"): ("parity_tests/test_training_state.py", "TOL", "<="),
    ("test_data_parallel.py", "1.1e-15"): ("parity_tests/test_data_parallel.py", "TOL", "<="),
    ("test_data_parallel.py", "3.1e-15"): ("parity_tests/test_data_parallel.py", "TOL", "<="),
    ("test_dropout.py", "9e-16"): ("parity_tests/test_dropout.py", "_TWIN_RTOL['float64']", "<="),
    ("test_dropout.py", "3.6e-16"): ("parity_tests/test_dropout.py", "assert diff <= 1e-13 * scale", "<="),
}
# The same measured figures where other pages and the code's docstrings state them (checked to agree):
# the schedules' worst over 1000 steps, and CosineAnnealingLR with eta_min != 0 (torch's recursion).
FIGURE_SITES = {
    "3.2e-13": ("docs/schedules.md", "_jaxinit/schedules/__init__.py", "parity_tests/test_schedules.py"),
    "2.6e-12": ("docs/schedules.md", "_jaxinit/schedules/__init__.py", "parity_tests/test_schedules.py"),
}


def _literal(node):
    """``ast.literal_eval`` that also reads ``dict(a=1, ...)``."""
    import ast

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


def _constant(path: str, expr: str) -> float:
    """The value of ``expr`` in ``path``: a module-level literal (subscripts allowed) or a snippet's number."""
    import ast

    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    if not path.endswith(".py") or "=" in expr:
        assert expr in text, f"{path} no longer contains {expr!r}"
        return float(_FIGURE.findall(expr)[0])
    name, _, rest = expr.partition("[")
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = _literal(node.value)
            for key in re.findall(r"\['([^']+)'\]", "[" + rest if rest else ""):
                value = value[key]
            return float(value)
    raise AssertionError(f"{path}: no module-level constant {name}")


def claims_figures(path: str = "README.md") -> dict[tuple[str, str], str]:
    """``{(first test file of the row, figure): row text}`` of the claims table of ``path``."""
    found = {}
    for line in _section(path, "What is exact, and how it is proven").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[3].startswith("`test_"):
            continue
        first = cells[3].split("`")[1]
        for fig in _FIGURE.findall(cells[2]):
            found[(first, fig)] = cells[2]
    return found


def test_claims_table_matches_the_tests_constants():
    """Each figure of the claims table is a tolerance a test asserts ("==") or a measured value the test's
    tolerance bounds ("<="); a figure added, changed or left stale fails here, naming the row."""
    figures = claims_figures()
    assert len(figures) >= 10, figures
    untied = sorted(set(figures) - set(CLAIMS))
    assert not untied, f"figures of the claims table tied to no test constant (add them to CLAIMS): {untied}"
    stale = sorted(set(CLAIMS) - set(figures))
    assert not stale, f"CLAIMS entries whose figure the table no longer states: {stale}"
    bad = []
    for (row, fig), (path, expr, rel) in CLAIMS.items():
        bound, value = _constant(path, expr), float(fig)
        if not (value == bound if rel == "==" else value <= bound):
            bad.append(f"{row} states {fig}, {path} {expr} is {bound:g} (expected {fig} {rel} {bound:g})")
    assert not bad, bad
    for fig, paths in FIGURE_SITES.items():
        for path in paths:
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                assert fig in f.read(), f"{path} does not state the measured {fig} the other pages state"


def test_docs_tests_lists_every_test_file():
    """docs/tests.md names every parity_tests/test_*.py, and only files that exist."""
    with open(os.path.join(ROOT, "docs", "tests.md"), encoding="utf-8") as f:
        named = set(re.findall(r"`(test_\w+\.py)`", f.read()))
    present = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "parity_tests", "test_*.py"))}
    assert not present - named, f"docs/tests.md does not describe {sorted(present - named)}: add a row each"
    assert not named - present, f"docs/tests.md names test files that do not exist: {sorted(named - present)}"
