"""The run layout (``layout.RunLayout``: every runs/<profile>/ path) and the notebook pipeline (``pipeline.py``: one
declaration of what each notebook reads, waits for, runs per variant and leaves as completion markers)."""
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medbind_lib import ROOT, pipeline
from medbind_lib.config import load_profile
from medbind_lib.layout import RunLayout

NOTEBOOK_PY = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


# ------------------------------------------------------------------------------------------------ layout
@pytest.mark.parametrize("kind", ["profile", "mapping", "attributes", "folder"])
def test_layout_paths_are_todays_literal_paths(tmp_path, kind):
    runs = tmp_path / "runs"
    cfg = {"profile": load_profile("smoke", overrides={"runs_dir": str(runs)}),
           "mapping": {"runs_dir": str(runs), "profile": "unit"},
           "attributes": type("Cfg", (), {"runs_dir": str(runs)})(),
           "folder": runs}[kind]
    L = RunLayout(cfg)
    assert RunLayout(L).root == L.root == runs
    assert L.stage("02") == L.stage(2) == L.stage("2") == runs / "02"
    assert L.checkpoint_dir("medbind", "medbind_bd") == L.checkpoint_dir("02", "medbind_bd") == runs / "02" / "medbind_bd"
    assert L.checkpoint_dir("medbind", "medbind_bd@seed1") == runs / "02" / "medbind_bd@seed1"
    assert L.checkpoint_dir("medcsp", "medcsp_a") == L.checkpoint_dir("09", "medcsp_a") == runs / "09" / "medcsp_a"
    assert L.checkpoint("medbind", "ecg_clip") == runs / "02" / "ecg_clip" / "best.pt"
    assert L.checkpoint("medcsp", "medcsp", "last") == runs / "09" / "medcsp" / "last.pt"
    assert L.embeddings() == runs / "embeddings"
    assert L.embeddings("medbind_bd_untrained") == runs / "embeddings" / "medbind_bd_untrained"
    assert L.tables == runs / "tables"
    assert L.linked == runs / "01" and L.link_params == runs / "01" / "link_params.json"
    assert L.support_embeddings == runs / "06" / "support_embeddings"
    assert L.llm == runs / "07" and L.llm_quality == runs / "07" / "quality.csv"
    assert L.llm_task_frame("mortality") == runs / "07" / "task_mortality.parquet"
    assert L.llm_features("medbind_bd", "cxr", "best") == runs / "07" / "features" / "medbind_bd" / "cxr_best.npz"
    assert L.llm_predictions("mortality", "bd") == runs / "07" / "predictions" / "mortality" / "bd"
    assert L.medcsp_data == runs / "08" and L.medcsp_params == runs / "08" / "params.json"
    assert L.ehr_tasks == runs / "10"
    assert L.timings == runs / "timings.csv" and L.env == runs / "env.json"
    assert L.executed("02_pretrain-medbind_bd.ipynb") == runs / "02_pretrain-medbind_bd.ipynb"
    assert L.progress_log("02_pretrain-medbind_bd.ipynb") == runs / "progress" / "02_pretrain-medbind_bd.log"
    if kind == "profile":                                 # the profile's own keys (resolved by config.py)
        assert L.figures == Path(cfg.figures_dir) == runs / "figures"
        assert L.cache == Path(cfg.cache_dir) == runs / "cache"
    else:                                                 # config.py's defaults under runs_dir
        assert L.figures == runs / "figures" and L.cache == runs / "cache"
    assert L.text_features == runs / "cache" / "text_features"


def test_layout_takes_the_profiles_figures_and_cache_keys(tmp_path):
    cfg = load_profile("smoke", overrides={"runs_dir": str(tmp_path / "r"), "figures_dir": str(tmp_path / "f"),
                                           "cache_dir": str(tmp_path / "c")})
    L = RunLayout(cfg)
    assert (L.figures, L.cache, L.text_features) == (tmp_path / "f", tmp_path / "c", tmp_path / "c" / "text_features")


def test_layout_rejects_what_it_cannot_place():
    with pytest.raises(KeyError, match="runs_dir"):
        RunLayout({"profile": "x"})
    with pytest.raises(ValueError, match="medbind"):
        RunLayout({"runs_dir": "r"}).checkpoint_dir("clip", "v")
    with pytest.raises(ValueError, match="notebook number"):
        RunLayout({"runs_dir": "r"}).stage("pretrain")


def test_layout_sits_at_the_bottom_floor():
    """Importable without torch, numpy, pandas or any other suite module than the package itself."""
    code = ("import sys, medbind_lib.layout; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'pandas', 'yaml') "
            "or m.startswith('medbind_lib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "['medbind_lib', 'medbind_lib.layout']"


# ---------------------------------------------------------------------------------------------- pipeline
def test_every_notebook_has_a_pipeline_entry_and_vice_versa():
    assert [p.stem for p in NOTEBOOK_PY] == [s.name for _, s in sorted(pipeline.PIPELINE.items())]
    assert all(n == s.number == s.name[:2] for n, s in pipeline.PIPELINE.items())


def test_pipeline_graph_is_acyclic_and_points_backwards():
    order = pipeline.order()
    assert sorted(order) == sorted(pipeline.PIPELINE)
    for n, s in pipeline.PIPELINE.items():
        assert set(s.needs) | set(s.after) <= set(pipeline.PIPELINE), n
        assert all(order.index(m) < order.index(n) and m < n for m in pipeline.waits_for(n)), n


def test_a_cycle_is_refused(monkeypatch):
    g = dict(pipeline.PIPELINE)
    g["01"] = dataclasses.replace(g["01"], needs=("12",))
    monkeypatch.setattr(pipeline, "PIPELINE", g)
    with pytest.raises(ValueError, match="cycle"):
        pipeline.order()


def test_producers_are_todays_test_notebooks_selection():
    assert pipeline.producers() == ["00", "01", "02", "08", "09"]
    read = {m for s in pipeline.PIPELINE.values() for m in s.needs}
    assert read <= set(pipeline.producers())             # every notebook read by another marks its completion
    make = (ROOT / "Makefile").read_text()
    target = make[make.index("\ntest-notebooks:"):].split("\n\n")[0]
    assert "medbind_lib.run --profile smoke --producers" in target and "--only" not in target


def test_todays_graph():
    """The graph as prereq.NEEDS and run.AFTER declared it before pipeline.py."""
    assert {n: s.needs for n, s in pipeline.PIPELINE.items() if s.needs} == {
        "02": ("01",), "03": ("01", "02"), "04": ("01", "02"), "05": ("01", "02"), "06": ("01", "02"),
        "07": ("01", "02"), "08": ("01",), "09": ("01", "08"), "10": ("01", "02", "08", "09"),
        "11": ("01", "02", "09"), "12": ("08", "09")}
    assert {n: s.after for n, s in pipeline.PIPELINE.items() if s.after} == {"10": ("07",)}
    assert pipeline.needs("2") == ("01",) and pipeline.needs("99") == () and pipeline.waits_for("10") == {
        "01", "02", "07", "08", "09"}


def test_variant_notebooks_are_the_per_variant_stages():
    import papermill as pm

    declared = {p.name[:2] for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
                if "variant" in pm.inspect_notebook(str(p))}
    assert declared == {n for n, s in pipeline.PIPELINE.items() if s.variants} == {"02", "09"}
    cfg = load_profile("smoke", overrides={"variants": ["medbind_bd", "ecg_clip"], "seed_replicates": 3,
                                           "seed_replicate_variants": ["medbind_bd"],
                                           "medcsp_variants": ["medcsp", "medcsp_a"]})
    assert pipeline.variant_runs("02", cfg) == ["medbind_bd", "ecg_clip", "medbind_bd@seed1", "medbind_bd@seed2"]
    assert pipeline.variant_runs("09", cfg) == ["medcsp", "medcsp_a"]
    assert pipeline.variant_runs("03", cfg) is None
    cfg["seed_replicate_variants"] = ["medcsp", "medbind_bd"]
    assert pipeline.variant_runs("09", cfg) == ["medcsp", "medcsp_a", "medcsp@seed1", "medcsp@seed2"]


def _old_outputs(cfg, producer):
    """prereq._outputs with literal joins (the reference the pipeline must reproduce), for seed_replicates 2 and
    every variant replicated (the schema default)."""
    from medbind_lib.replicates import replicate_runs

    runs = Path(cfg.runs_dir)
    if producer == "01":
        return [runs / "01" / "link_params.json"]
    if producer == "02":
        out = []
        for v in list(cfg.variants) + replicate_runs(cfg):
            out += [runs / "02" / v / "best.pt", runs / "embeddings" / v]
            if v == "medbind_bd":
                out.append(runs / "embeddings" / f"{v}_untrained")
        return out
    if producer == "08":
        return [runs / "08" / "params.json"]
    out = [runs / "embeddings" / "medcsp_untrained", runs / "embeddings" / "medcsp@seed1_untrained"]
    for v in list(cfg.medcsp_variants) + ["medcsp_a@seed1", "medcsp@seed1", "medcsp_single@seed1"]:  # registry order
        out += [runs / "09" / v / "best.pt", runs / "embeddings" / v]
    return out


def test_completion_outputs_are_todays(tmp_path):
    cfg = load_profile("smoke", overrides={"runs_dir": str(tmp_path / "runs"), "seed_replicates": 2,
                                           "medcsp_variants": ["medcsp", "medcsp_a", "medcsp_single"]})
    for producer in ("01", "02", "08", "09"):
        assert pipeline.outputs(cfg, producer) == _old_outputs(cfg, producer), producer
    assert pipeline.outputs(cfg, "00") == [Path(cfg.data_root) / ".synth_stamp.json"]    # synth.write_cohort's stamp
    assert pipeline.outputs(load_profile("paper"), "00") == []                          # real data: the pre-flight
    with pytest.raises(KeyError):
        pipeline.outputs(cfg, "03")


def test_no_hand_joined_run_folders_left_in_the_notebooks():
    for p in NOTEBOOK_PY:
        src = p.read_text()
        assert not re.search(r"runs_dir|parents\[\d\]\s*/\s*\"embeddings\"", src), p.name
