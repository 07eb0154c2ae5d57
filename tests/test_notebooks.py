"""The notebooks under notebooks/ are committed without outputs, and pytest executes them.

Executing them is nbmake's job (``--nbmake`` in pytest's addopts, ``notebooks`` in its
testpaths); this file only checks, cheaply, that what is committed is stripped.

Strip every notebook in place before committing::

    python tests/test_notebooks.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
STRIP_COMMAND = "python tests/test_notebooks.py"


def notebook_paths() -> list[Path]:
    """Every notebook under notebooks/ (Jupyter's checkpoint copies aside)."""
    return sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def leftovers(notebook: nbformat.NotebookNode) -> list[str]:
    """What an executed notebook leaves behind: outputs, execution counts, cell timings."""
    found = []
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type == "code" and cell.get("outputs"):
            found.append(f"cell {number}: {len(cell.outputs)} output(s)")
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            found.append(f"cell {number}: execution_count {cell.execution_count}")
        if "execution" in cell.get("metadata", {}):
            found.append(f"cell {number}: execution timing metadata")
    return found


def strip(path: Path) -> bool:
    """Remove outputs, execution counts and cell timings in place; whether anything changed."""
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    if not leftovers(notebook):
        return False
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(notebook, path)
    return True


def test_there_are_notebooks() -> None:
    names = {p.name for p in notebook_paths()}
    assert {"quickstart.ipynb", "loss_and_miners.ipynb"} <= names


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebook_is_stripped_and_valid(path: Path) -> None:
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(notebook)
    found = leftovers(notebook)
    assert not found, (
        f"{path.name} was committed executed ({'; '.join(found)}); run {STRIP_COMMAND}"
    )


def test_pytest_executes_the_notebooks(pytestconfig: pytest.Config) -> None:
    """The default `pytest` run (the README's test command) collects notebooks/ with nbmake."""
    assert "notebooks" in pytestconfig.getini("testpaths")
    assert "--nbmake" in pytestconfig.getini("addopts")


if __name__ == "__main__":
    changed = [
        p for p in (map(Path, sys.argv[1:]) if sys.argv[1:] else notebook_paths()) if strip(p)
    ]
    print("\n".join(f"stripped {p}" for p in changed) or "nothing to strip")
