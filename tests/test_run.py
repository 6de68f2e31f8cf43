"""The papermill runner: order, --only, --set, undeclared parameters, pre-flight checks, and the first failing
notebook is named with its cell and executed copy whatever the failure (exception, timeout)."""
import dataclasses
import json
import sys
import time

import nbformat
import pytest

from medbind_lib import pipeline, prereq, run
from medbind_lib.config import load_profile


def _needs(monkeypatch, graph):
    """The real pipeline with only ``graph``'s needs (and no ``after``): toy notebooks read what the test says."""
    monkeypatch.setattr(pipeline, "PIPELINE", {n: dataclasses.replace(s, needs=graph.get(n, ()), after=())
                                               for n, s in pipeline.PIPELINE.items()})


def _nb(path, *sources, params='profile = "smoke"\noverrides = {}'):
    nb = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]})]
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
    monkeypatch.setattr(run, "load_profile",
                        lambda p, overrides=None: load_profile(p, overrides={"runs_dir": str(runs), **(overrides or {})}))
    monkeypatch.setattr(run, "preflight", lambda cfg: None)              # no cohort for toy notebooks
    _needs(monkeypatch, {"05": ("01", "02")})                             # only the toy 05 reads earlier outputs
    return d, runs


def test_list_and_only(nbdir):
    d, _ = nbdir
    assert [p.name for p in run.list_notebooks(directory=d)] == ["00_ok.ipynb", "01_boom.ipynb", "02_never.ipynb"]
    assert [p.name for p in run.list_notebooks(["02"], directory=d)] == ["02_never.ipynb"]
    with pytest.raises(SystemExit, match="07"):
        run.list_notebooks(["07"], directory=d)
    assert run.parse_only(None) is None and run.parse_only("0, 2") == ["00", "02"]
    for empty in ("", " , "):
        with pytest.raises(SystemExit, match="empty selection"):
            run.parse_only(empty)


def test_undeclared_parameter_is_an_error(nbdir):
    d, _ = nbdir
    with pytest.raises(run.NotebookFailed, match=r"\['lr'\].*declared: \['overrides', 'profile'\]"):
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
    timings = (runs / "timings.csv").read_text().splitlines()
    assert timings[0] == "notebook,seconds,status" and timings[1].startswith("00_ok.ipynb,")
    assert timings[2].endswith(",FAILED") and len(timings) == 3


def test_cell_timeout_is_reported_with_cell_and_copy(nbdir, capsys):
    d, runs = nbdir
    _nb(d / "03_slow.ipynb", "x = 1", "import time\ntime.sleep(60)")
    t0 = time.time()
    assert run.main(["--profile", "smoke", "--only", "03", "--set", "notebook_timeout=3"]) == 1
    assert time.time() - t0 < 55
    err = capsys.readouterr().err
    assert "notebook 03_slow.ipynb stopped in cell 4 of the executed copy ('import time')" in err and "Timeout" in err
    assert "notebook_timeout = 3 s" in err and str(runs / "03_slow.ipynb") in err and "Traceback" not in err


def test_set_reaches_every_notebook(nbdir, capsys):
    d, runs = nbdir
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('profile = "smoke"\noverrides = {}', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from medbind_lib.config import load_profile\n"
                                          "print(load_profile(profile, overrides=overrides).lr)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, d / "04_set.ipynb")
    assert run.main(["--profile", "smoke", "--only", "04", "--set", "lr=0.125"]) == 0
    assert "0.125" in nbformat.read(runs / "04_set.ipynb", as_version=4).cells[-1].outputs[0]["text"]
    # a notebook without an `overrides` parameter cannot silently ignore --set
    _nb(d / "06_old.ipynb", "x = 1", params='profile = "smoke"')
    assert run.main(["--profile", "smoke", "--only", "06", "--set", "lr=0.125"]) == 1
    assert "['overrides'] not declared" in capsys.readouterr().err


def test_bad_set_and_unknown_key_are_clean_errors(nbdir, capsys):
    assert run.main(["--profile", "smoke", "--set", "epoch=3"]) == 2
    assert "did you mean 'epochs'?" in capsys.readouterr().err
    assert run.main(["--profile", "smoke", "--set", "lr=-1"]) == 2
    assert "'lr' must be > 0" in capsys.readouterr().err


def test_missing_earlier_notebook_is_named_before_the_kernel_starts(nbdir, capsys):
    d, runs = nbdir
    _nb(d / "05_table.ipynb", "open('never-ran', 'w').close()")
    assert run.main(["--profile", "smoke", "--only", "05"]) == 1
    err = capsys.readouterr().err
    assert "run them first: python -m medbind_lib.run --profile smoke --only 01,02" in err
    assert not (runs / "05_table.ipynb").exists()


def test_paper_without_data_fails_in_seconds(tmp_path, capsys):
    t0 = time.time()
    assert run.main(["--profile", "paper", "--set", f"data_root={tmp_path / 'none'}",
                     f"runs_dir={tmp_path / 'runs'}"]) == 2
    assert time.time() - t0 < 30
    err = capsys.readouterr().err
    assert "11 missing path(s); nothing was run" in err and "mimic_iv_root" in err
    assert not (tmp_path / "runs").exists()


def test_help_lists_the_profiles(capsys):
    with pytest.raises(SystemExit):
        run.main(["--help"])
    out = capsys.readouterr().out
    assert "profiles (params/<name>.yaml)" in out and "paper" in out and "--set" in out


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
    # seed replicates join notebook 02's runs; notebook 09 runs once per MEDCSP variant (pipeline.py)
    cfg = load_profile("smoke", overrides={"variants": ["medbind_bd", "ecg_clip"], "seed_replicates": 2,
                                           "seed_replicate_variants": ["medbind_bd"], "medcsp_variants": ["medcsp"]})
    assert [p["variant"] for p, _ in run.executions(d / "02_v.ipynb", cfg)] == ["medbind_bd", "ecg_clip",
                                                                               "medbind_bd@seed1"]
    (d / "09_v.ipynb").write_bytes((d / "02_v.ipynb").read_bytes())
    assert run.executions(d / "09_v.ipynb", cfg) == [({"profile": "smoke", "variant": "medcsp"}, "09_v-medcsp.ipynb")]
    (d / "03_v.ipynb").write_bytes((d / "02_v.ipynb").read_bytes())   # `variant` without a pipeline variants key
    with pytest.raises(run.NotebookFailed, match="names no profile key"):
        run.executions(d / "03_v.ipynb", cfg)


def test_producers_selection():
    assert run.select(None, producers=True) == ["00", "01", "02", "08", "09"]
    assert run.select("1,2") == ["01", "02"] and run.select(None) is None
    with pytest.raises(SystemExit, match="exclude each other"):
        run.select("01", producers=True)


def test_torchrun_launch_command(monkeypatch):
    """The pre-training notebooks' multi-GPU launch (distributed.launch): the command they wrote by hand."""
    from medbind_lib import distributed

    calls = []
    monkeypatch.setattr(distributed.subprocess, "run", lambda cmd, check: calls.append((cmd, check)))
    distributed.launch("medbind_lib.medcsp.pretrain", ["--profile", "smoke", "--variant", "medcsp"], 2,
                       {"epochs": 1, "variants": ["medbind_bd"]})
    distributed.launch("medbind_lib.medbind.pretrain", ["--profile", "smoke", "--variant", "medbind_bd"], 4, {})
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    assert calls == [
        (head + ["--nproc_per_node=2", "-m", "medbind_lib.medcsp.pretrain", "--profile", "smoke", "--variant", "medcsp",
                 "--set", "epochs=1", 'variants=["medbind_bd"]'], True),
        (head + ["--nproc_per_node=4", "-m", "medbind_lib.medbind.pretrain", "--profile", "smoke", "--variant",
                 "medbind_bd"], True)]


def test_terminal_shows_the_notebooks_bars_and_log_lines(nbdir, capsys, monkeypatch):
    d, _ = nbdir
    monkeypatch.delenv("MEDBIND_NO_PROGRESS", raising=False)              # CI disables bars; this test needs them
    monkeypatch.setenv("MEDBIND_PROGRESS_EVERY", "0")
    _nb(d / "07_bars.ipynb", "from medbind_lib.runtime import log_line, progress\n"
                             "bar = progress(total=30, desc='toy fits')\n"
                             "for i in range(30):\n    bar.update(1)\n    bar.set_postfix(loss=f'{3 - i / 10:.2f}')\n"
                             "bar.close()\nlog_line('[toy] epoch 1 valid: r1=0.500')\n"
                             "for _ in progress(range(4), desc='embed cxr'):\n    pass")
    assert run.main(["--profile", "smoke", "--only", "07"]) == 0
    out = capsys.readouterr().out
    lines = [s.strip() for s in out.splitlines()]
    assert "[toy] epoch 1 valid: r1=0.500" in lines
    assert any(s.startswith("toy fits: 100%") and "30/30" in s and "loss=0.10" in s for s in lines), out
    assert any(s.startswith("embed cxr: 100%") and "4/4" in s for s in lines), out
    assert len(lines) < 20                                                 # the newest line per poll, no flood


def test_mirrored_bar_writes_plain_text(tmp_path, monkeypatch):
    from medbind_lib.runtime import PROGRESS_LOG_ENV, MirroredBar, progress

    monkeypatch.delenv("MEDBIND_NO_PROGRESS", raising=False)
    monkeypatch.setenv(PROGRESS_LOG_ENV, str(tmp_path / "p.log"))
    monkeypatch.setenv("MEDBIND_PROGRESS_EVERY", "0")
    with progress(total=5, desc="medbind_bd") as bar:
        assert isinstance(bar, MirroredBar)
        for _ in range(5):
            bar.update(1)
            bar.set_postfix(loss="1.234", sps="55.0")
        assert bar.n == 5
    text = (tmp_path / "p.log").read_text()
    assert "medbind_bd: 100%" in text and "5/5" in text and "loss=1.234, sps=55.0" in text
    assert progress(range(3), enabled=False).disable                       # disabled bars mirror nothing


def test_lanes_run_notebooks_side_by_side_in_dependency_order(nbdir, monkeypatch, capfd):
    """notebook_lanes=2: independent notebooks overlap in time, a notebook starts only after the ones it reads,
    each child gets cores // lanes threads, and the time table holds every run."""
    d, runs = nbdir
    for p in d.glob("*.ipynb"):
        p.unlink()
    stamp = ("import json, os, time\nt0 = time.time()\ntime.sleep({s})\n"
             "json.dump({{'start': t0, 'end': time.time(), 'omp': os.environ.get('OMP_NUM_THREADS')}}, "
             "open(r'{runs}/{n}.json', 'w'))")
    for n, s in (("00_a", 0), ("01_slow", 3), ("02_reads01", 0), ("03_free", 3)):
        _nb(d / f"{n}.ipynb", stamp.format(s=s, runs=runs, n=n))
    _needs(monkeypatch, {"01": ("00",), "02": ("01",), "03": ("00",)})
    monkeypatch.setattr(prereq, "require", lambda cfg, nb: None)         # toy notebooks write no artifacts
    monkeypatch.setattr(run, "_cores", lambda: 4)
    assert run.main(["--profile", "smoke", "--set", "notebook_lanes=2"]) == 0
    t = {n: json.loads((runs / f"{n}.json").read_text()) for n in ("00_a", "01_slow", "02_reads01", "03_free")}
    assert t["01_slow"]["start"] >= t["00_a"]["end"] and t["03_free"]["start"] >= t["00_a"]["end"]
    assert t["03_free"]["start"] < t["01_slow"]["end"] and t["01_slow"]["start"] < t["03_free"]["end"]  # overlap
    assert t["02_reads01"]["start"] >= t["01_slow"]["end"]
    assert {v["omp"] for v in t.values()} == {"2"}
    rows = (runs / "timings.csv").read_text().splitlines()
    assert len(rows) == 5 and all(r.endswith(",ok") for r in rows[1:])
    assert "2 at once, 2 thread(s) each" in capfd.readouterr().out


def test_lanes_stop_launching_after_a_failure_and_name_it(nbdir, monkeypatch, capfd):
    _, runs = nbdir
    _needs(monkeypatch, {"02": ("01",)})
    assert run.main(["--profile", "smoke", "--set", "notebook_lanes=2"]) == 1
    err = capfd.readouterr().err
    assert "01_boom.ipynb" in err and "synthetic failure" in err
    assert (runs / "00_ok.ipynb").exists() and not (runs / "02_never.ipynb").exists()
    assert not (runs.parent / "never-ran").exists()
    assert any(r.startswith("01_boom.ipynb,") and r.endswith(",FAILED")
               for r in (runs / "timings.csv").read_text().splitlines())


def test_chain_lengths_put_the_runs_others_wait_for_first(tmp_path):
    jobs = [run.Job(tmp_path / f"{n}_x.ipynb", {}, f"{n}_x.ipynb") for n in ("03", "07", "09", "10")]
    jobs[3].deps = {"07_x.ipynb", "09_x.ipynb"}
    assert run.chain_lengths(jobs) == {"03_x.ipynb": 1, "07_x.ipynb": 2, "09_x.ipynb": 2, "10_x.ipynb": 1}
