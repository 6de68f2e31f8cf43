"""MEDCSP case-study patients (Figures 8-9): which population, which patients, one point per image and per report.

Hand-made records (one row per CXR study) where the top patients of each population are known by counting.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from medbind_lib.config import CHOICES, SCHEMA, load_profile
from medbind_lib.errors import ConfigError
from medbind_lib.medcsp import cases
from medbind_lib.reports import case_studies as cs

#            subject: (split, studies)  train: 5 and 7 have 3 studies (tie -> 5), 3 has 2; valid 11 has 5 (no
#            population); test: 4 and 20 have 2 (tie -> 4, compared as numbers, not as text "20" < "4"), 30 has 1
_PATIENTS = {5: ("train", [1, 2, 3]), 7: ("train", [4, 5, 6]), 3: ("train", [7, 8]), 9: ("train", [9]),
             11: ("valid", [10, 11, 12, 13, 14]), 20: ("test", [20, 21]), 4: ("test", [22, 23]), 30: ("test", [24])}
# cached frontal images: study 1 has two, study 3 none (not cached), every other study one
_IMAGES = {1: ["a", "b"], 2: ["c"], 4: ["d"], 5: ["e"], 6: ["f"], 20: ["g"], 21: ["h"], 22: ["i"], 23: ["j"]}


def _records() -> pd.DataFrame:
    rows = [{"record_id": f"cxr-{st}", "subject_id": s, "study_id": st, "split": sp,
             "text": "" if st == 2 else f"report of study {st}"}
            for s, (sp, studies) in _PATIENTS.items() for st in studies]
    return pd.DataFrame(rows).astype({"text": "string"})


def _images() -> pd.DataFrame:
    rows = [(rid, st) for st, ids in _IMAGES.items() for rid in ids]
    return pd.DataFrame({"record_id": [r for r, _ in rows], "study_id": [s for _, s in rows],
                         "index": np.arange(len(rows))})


def _export(rows: pd.DataFrame) -> dict:
    """What notebook 09 writes for ``rows``: image i embeds as e_i, a study's report as its study's vector."""
    n = len(rows)
    first = np.arange(n) - rows.groupby("study_id").cumcount().to_numpy()      # a study's rows are contiguous
    return {"emb": np.eye(n), "text_emb": np.eye(n)[first],
            "text": rows["text"].fillna("").astype(str).to_numpy(), "record_id": rows["record_id"].to_numpy(str),
            "study_id": rows["study_id"].astype(str).to_numpy(), "subject_id": rows["subject_id"].astype(str).to_numpy(),
            "split": rows["split"].to_numpy(str), "population": rows["population"].to_numpy(str),
            "rank": rows["rank"].to_numpy(np.int64)}


def test_the_key_defaults_to_pretraining_patients_as_our_reading():
    default, doc = SCHEMA["medcsp_case_population"]
    assert default == "pretraining" and "interpretation" in doc and "radiological records" in doc
    assert set(CHOICES["medcsp_case_population"]) == set(cases.POPULATIONS) == {"pretraining", "test"}
    assert load_profile("smoke").medcsp_case_population == "pretraining"
    assert load_profile("smoke", overrides={"medcsp_case_population": "test"}).medcsp_case_population == "test"
    with pytest.raises(ConfigError, match="medcsp_case_population"):
        load_profile("smoke", overrides={"medcsp_case_population": "holdout"})
    with pytest.raises(ConfigError, match="medcsp_case_top"):
        load_profile("smoke", overrides={"medcsp_case_top": 1})


def test_populations_put_the_profiles_first():
    assert cases.populations("pretraining") == ("pretraining", "test")
    assert cases.populations("test") == ("test", "pretraining")
    with pytest.raises(ValueError, match="medcsp_case_population"):
        cases.populations("valid")
    assert set(cs.POPULATION_LABELS) == set(cases.POPULATIONS)


def test_top_patients_count_studies_in_the_populations_split():
    r = _records()
    assert cases.top_patients(r, "pretraining", 2) == [5, 7]              # 3 studies each, tie -> 5; never 11
    assert cases.top_patients(r, "pretraining", 10) == [5, 7, 3, 9]
    assert cases.top_patients(r, "test", 2) == [4, 20]                    # 2 studies each, tie -> 4 < 20
    assert cases.top_patients(r, "test", 3) == [4, 20, 30]
    dup = pd.concat([r, r[r["study_id"] == 24]])                           # a repeated study row counts once
    assert cases.top_patients(dup, "test", 3) == [4, 20, 30]


def test_case_images_every_cached_image_of_the_top_patients_studies():
    rows = cases.case_images(_records(), _images(), 2)
    pre = rows[rows["population"] == "pretraining"]
    assert pre["record_id"].tolist() == ["a", "b", "c", "d", "e", "f"]   # 5's studies 1 (2 images), 2; 3 not cached
    assert pre["subject_id"].tolist() == [5, 5, 5, 7, 7, 7] and pre["rank"].tolist() == [0, 0, 0, 1, 1, 1]
    assert set(pre["split"]) == {"train"}
    test = rows[rows["population"] == "test"]
    assert test["record_id"].tolist() == ["i", "j", "g", "h"] and test["rank"].tolist() == [0, 0, 1, 1]
    assert rows.loc[rows["record_id"] == "b", "text"].item() == "report of study 1"


def test_a_study_with_two_images_gives_two_image_points_and_one_report_point():
    z = _export(cases.case_images(_records(), _images(), 2))
    assert cs.case_patients(z, "pretraining", 2) == ["5", "7"]
    assert cs.case_patients(z, "test", None) == ["4", "20"]
    p = cs.cxr_points(z, ["5"])
    # study 1: images a, b and ONE report; study 2: image c, its report empty -> no report point; study 3 uncached
    assert list(p["record_id"][p["modality"] == cs.IMAGE]) == ["a", "b", "c"]
    assert list(p["record_id"][p["modality"] == cs.REPORT]) == ["a"]
    np.testing.assert_array_equal(p["emb"][p["modality"] == cs.REPORT], z["text_emb"][[0]])
    p7 = cs.cxr_points(z, ["5", "7"])
    assert (p7["modality"] == cs.IMAGE).sum() == 6 and (p7["modality"] == cs.REPORT).sum() == 4
    with pytest.raises(ValueError, match="medcsp_case_top"):
        cs.case_patients(z, "test", 3)


def test_case_patients_follow_the_exported_rank_not_the_cached_images():
    # 5 and 7 have 3 records each (tie -> 5), but only 2 of 5's studies have a cached image: counting the export's
    # studies would put 7 first; the rank written at export keeps the records' order
    z = _export(cases.case_images(_records(), _images(), 2))
    assert cs.pick_top_patients(z, n=2, split="train") == ["7", "5"]
    assert cs.case_patients(z, "pretraining", 2) == ["5", "7"]


class _View:
    """A stand-in for CXRView: an image embeds as its mean pixel, a report as its length."""
    embed_dim = 2

    def encode_cxr(self, x):
        return torch.stack([x.mean((1, 2, 3)), torch.ones(len(x))], 1)

    def tokenize(self, texts, device=None):
        return list(texts)

    def encode_text(self, tokens, modality="cxr"):
        return torch.tensor([[float(len(t)), 0.0] for t in tokens])


class _Cache:
    def __init__(self, manifest):
        self.manifest = manifest
        self.array = np.stack([np.full((16, 16), 10 * i, np.uint8) for i in range(len(manifest))])


def test_the_export_writes_ids_population_rank_and_one_report_per_study():
    from medbind_lib.medcsp.embed import _cases

    cfg = load_profile("smoke", overrides={"medcsp_case_top": 2, "cxr_size": 16})
    loaded = {"cxr_cached": _Cache(_images()), "data": {"cxr_records": _records()}}
    z = _cases(_View(), loaded, cfg, "cpu", 4)
    assert z["record_id"].tolist() == ["a", "b", "c", "d", "e", "f", "i", "j", "g", "h"]
    assert z["study_id"].tolist()[:3] == ["1", "1", "2"] and z["subject_id"].tolist()[:4] == ["5", "5", "5", "7"]
    assert z["population"].tolist() == ["pretraining"] * 6 + ["test"] * 4 and z["rank"].tolist()[:4] == [0, 0, 0, 1]
    assert z["emb"].shape == (10, 2) and z["text_emb"].shape == (10, 2)
    assert z["emb"][0, 0] < z["emb"][1, 0]                                # images a and b embed apart
    assert z["text_emb"][0, 0] == z["text_emb"][1, 0] == len("report of study 1")
    p = cs.cxr_points(z, cs.case_patients(z, "pretraining", 2))
    assert (p["modality"] == cs.IMAGE).sum() == 6 and (p["modality"] == cs.REPORT).sum() == 4


def test_figures_draw_a_row_per_population():
    import matplotlib.pyplot as plt

    z = _export(cases.case_images(_records(), _images(), 2))
    rows = {cs.POPULATION_LABELS[p]: {"L_A only": cs.cxr_points(z, cs.case_patients(z, p)),
                                      "full": cs.cxr_points(z, cs.case_patients(z, p))}
            for p in cases.populations("pretraining")}
    scores = {r: {k: cs.grouping_scores(q["emb"], q["patient"], q["modality"], k=1) for k, q in v.items()}
              for r, v in rows.items()}
    fig = cs.plot_fig8(rows, scores)
    assert len(fig.axes) == 4
    assert fig.axes[0].get_ylabel().startswith("pre-training") and fig.axes[2].get_ylabel().startswith("held-out")
    assert "silhouette" in fig.axes[3].get_title()
    plt.close(fig)
