"""The papermill runner: order, --only, undeclared parameters, and the first failing notebook is named."""
import json

import nbformat
import pytest

from medbind_lib import run
from medbind_lib.config import load_profile


def _nb(path, *sources):
    nb = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def nbdir(tmp_path, monkeypatch):
    d = tmp_path / "notebooks"
    d.mkdir()
    _nb(d / "00_ok.ipynb", "x = 1 + 1", "print(profile, x)")
    _nb(d / "01_boom.ipynb", "raise ValueError('synthetic failure')")
    _nb(d / "02_never.ipynb", "open('never-ran', 'w').close()")
    monkeypatch.setattr(run, "NOTEBOOKS", d)
    runs = tmp_path / "runs"
    monkeypatch.setattr(run, "load_profile", lambda p: load_profile(p, overrides={"runs_dir": str(runs)}))
    return d, runs


def test_list_and_only(nbdir):
    d, _ = nbdir
    assert [p.name for p in run.list_notebooks(directory=d)] == ["00_ok.ipynb", "01_boom.ipynb", "02_never.ipynb"]
    assert [p.name for p in run.list_notebooks(["02"], directory=d)] == ["02_never.ipynb"]
    with pytest.raises(SystemExit, match="07"):
        run.list_notebooks(["07"], directory=d)


def test_undeclared_parameter_is_an_error(nbdir):
    d, _ = nbdir
    with pytest.raises(run.NotebookFailed, match=r"\['lr'\].*declared: \['profile'\]"):
        run.check_parameters(d / "00_ok.ipynb", {"profile": "smoke", "lr": 1})


def test_runner_stops_at_first_failure_and_names_it(nbdir, capsys):
    _, runs = nbdir
    assert run.main(["--profile", "smoke"]) == 1
    err = capsys.readouterr().err
    assert "01_boom.ipynb" in err and "synthetic failure" in err
    assert (runs / "00_ok.ipynb").exists() and (runs / "01_boom.ipynb").exists()
    assert not (runs / "02_never.ipynb").exists()
    env = json.loads((runs / "env.json").read_text())
    assert env["seed"] == 0 and env["params"]["profile"] == "smoke" and "torch" in env["packages"]
    executed = nbformat.read(runs / "00_ok.ipynb", as_version=4)
    assert "smoke 2" in executed.cells[-1].outputs[0]["text"]


def test_variant_notebooks_run_once_per_variant(tmp_path, monkeypatch):
    d = tmp_path / "notebooks"
    d.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('profile = "smoke"\nvariant = "a"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(variant)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, d / "02_v.ipynb")
    cfg = load_profile("smoke", overrides={"variants": ["medbind_bd", "ecg_clip"]})
    assert run.executions(d / "02_v.ipynb", cfg) == [
        ({"profile": "smoke", "variant": "medbind_bd"}, "02_v-medbind_bd.ipynb"),
        ({"profile": "smoke", "variant": "ecg_clip"}, "02_v-ecg_clip.ipynb")]
    from medbind_lib.golden import executed_copy
    assert executed_copy(d / "02_v.ipynb", tmp_path).name == "02_v-a.ipynb"
