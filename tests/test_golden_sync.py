"""The golden copies nbval checks must carry the same code as notebooks/ (nbval runs the golden code)."""
import nbformat
import pytest

from medbind_lib import ROOT
from medbind_lib.golden import GOLDEN, code_cells

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks_and_goldens():
    assert NOTEBOOKS, "no notebooks found"
    assert sorted(p.name for p in GOLDEN.glob("*.ipynb")) == [p.name for p in NOTEBOOKS], \
        "every notebook needs a golden copy (run `make golden`)"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_golden_code_matches_notebook(nb_path):
    golden = GOLDEN / nb_path.name
    assert golden.exists(), f"{golden} missing: run `make golden`"
    assert code_cells(nbformat.read(golden, as_version=4)) == code_cells(nbformat.read(nb_path, as_version=4)), \
        f"{golden.name} drifted from notebooks/{nb_path.name}: run `make golden`"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_jupytext_pair_in_sync(nb_path):
    import jupytext

    py = nb_path.with_suffix(".py")
    assert py.exists(), f"{py.name} missing (jupytext pair)"
    assert code_cells(jupytext.read(py)) == code_cells(nbformat.read(nb_path, as_version=4)), \
        f"{py.name} and {nb_path.name} differ: run `make notebooks`"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'profile = "smoke"' in tagged[0].source
    import papermill as pm

    declared = pm.inspect_notebook(str(nb_path))          # papermill must parse every line (--set needs overrides)
    assert {"profile", "overrides"} <= set(declared), sorted(declared)
