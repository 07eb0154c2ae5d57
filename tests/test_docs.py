"""The docs site lists every notebook, recipe and benchmark reader (cheap; no mkdocs build).

CI builds the site with ``mkdocs build --strict`` (``.ci/run``), which fails on a broken link or
API reference; this test only keeps the pages in step with what exists.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from supcon.data.benchmarks import BENCHMARKS

ROOT = Path(__file__).resolve().parent.parent


def _nav_files(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _nav_files(value)]
    return [f for item in node for f in _nav_files(item)]


def test_nav_lists_every_notebook_and_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = set(_nav_files(config["nav"]))
    notebooks = {f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert notebooks <= nav, notebooks - nav
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages <= nav, pages - nav
    assert all((ROOT / "docs" / f).exists() for f in nav)


def test_recipes_page_names_every_recipe_and_dataset() -> None:
    page = (ROOT / "docs" / "recipes.md").read_text()
    for recipe in (ROOT / "recipes").glob("*.yaml"):
        assert f"`{recipe.stem}`" in page, recipe.stem
    for dataset in BENCHMARKS:
        assert f"`{dataset}`" in page, dataset
