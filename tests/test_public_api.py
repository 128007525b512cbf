"""``kserve_nb.__all__`` is the package's public top level: what ``__init__`` exports, what exists,
and what the README and docs say the top level is."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
from pathlib import Path

import pytest

import kserve_nb

ROOT = Path(__file__).resolve().parent.parent
INIT = ROOT / "kserve_nb" / "__init__.py"
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _exported_by_init() -> set[str]:
    """Public names ``__init__`` gives its users: the lazy table and the functions it defines."""
    tree = ast.parse(INIT.read_text())
    names: set[str] = set(kserve_nb._LAZY)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            names.add(node.name)
    return names


def _is_submodule(name: str) -> bool:
    return importlib.util.find_spec(f"kserve_nb.{name}") is not None


def test_all_lists_exactly_what_init_exports() -> None:
    assert len(kserve_nb.__all__) == len(set(kserve_nb.__all__)), "a name is listed twice"
    assert set(kserve_nb.__all__) == _exported_by_init()


def test_every_name_in_all_exists_and_comes_from_its_module() -> None:
    for name in kserve_nb.__all__:
        value = getattr(kserve_nb, name)
        assert value is not None, name
        if name in kserve_nb._LAZY:
            module, attr = kserve_nb._LAZY[name]
            assert value is getattr(importlib.import_module(module), attr), name
    with pytest.raises(AttributeError, match="not_a_name"):
        kserve_nb.not_a_name  # noqa: B018 - the attribute access is the test


def test_the_readme_names_the_top_level_as_all_does() -> None:
    paragraph = next(p for p in README.read_text().split("\n\n") if "`kserve_nb.__all__`" in p)
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", paragraph))
    assert named == set(kserve_nb.__all__)


def test_docs_and_notebooks_use_only_the_top_level_or_submodules() -> None:
    texts = [README.read_text(), *(p.read_text() for p in DOCS)]
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        texts += ["".join(c["source"]) for c in cells]
    used = {m for text in texts for m in re.findall(r"\bkserve_nb\.([A-Za-z_][A-Za-z0-9_]*)", text)}
    assert used, "the docs show the API"
    stray = sorted(n for n in used if n not in kserve_nb.__all__ and not n.startswith("__") and not _is_submodule(n))
    assert stray == [], f"docs use kserve_nb.{stray} which is neither in __all__ nor a submodule"
