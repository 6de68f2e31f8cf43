"""The results page (``docs/RESULTS.md``): each claim of both papers beside our number, its CI, the pre-training
seeds and test patients it rests on, and whether it reproduces, read from a complete run's paired tables
(``runs/<profile>/tables/``; nothing is recomputed here).

A claim reproduces when our paired CI lies on the paper's side of 0, is reversed when it lies on the other side,
and is "not shown" when it holds 0. Rows with no CI (rank correlations) report their direction only.

    python -m medbind_lib.reports.results_page --profile default --out docs/RESULTS.md
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .. import registry
from ..layout import RunLayout
from ..metrics.paired import rests_on
from .format import row_label

__all__ = ["Claim", "CLAIMS", "claim_rows", "render", "write_page"]


@dataclass(frozen=True)
class Claim:
    """A published claim: which paired table holds our test of it, which rows, and the sign the paper reports."""
    paper: str
    text: str
    table: str
    select: Callable[[pd.DataFrame], pd.Series]
    sign: int = 1                      # +1: a - b > 0 in the paper; -1: below 0
    where: str = ""                    # the paper's figure / table


def _pair(a: str, b: str, col_a: str = "system_a", col_b: str = "system_b"):
    return lambda d: (d[col_a] == a) & (d[col_b] == b)


def _and(*fs):
    return lambda d: pd.concat([f(d) for f in fs], axis=1).all(axis=1)


def _col(col: str, *values):
    return lambda d: d[col].astype(str).isin(values)


def _contains(col: str, text: str):
    return lambda d: d[col].astype(str).str.contains(text, regex=False)


_BD = registry.HEADLINE["medbind"]
_NM = registry.without_term(_BD, "emcl")
_CSP = registry.HEADLINE["medcsp"]
_ZOO = "cxr_clip+ecg_clip"                      # registry rows (not variants): the encoder zoo, the references
_CSP_UNTRAINED = "medcsp_untrained"
CLAIMS: tuple[Claim, ...] = (
    Claim("MEDBind", "EMCL: MEDBind_BD retrieves a CXR's paired ECG better than MEDBind_NM", "fig2_seeds_paired",
          _and(_pair(_BD, _NM), _contains("item", "R@10")), where="Fig. 2"),
    Claim("MEDBind", "MEDBind_BD beats the encoder zoo (CLIP InfoNCE + ECG-CLIP) on CXR->ECG retrieval",
          "fig2_seeds_paired", _and(_pair(_BD, _ZOO), _contains("item", "R@10")),
          where="Fig. 2"),
    Claim("MEDBind", "MEDBind_BD beats MEDBind_NM in zero-shot COVID classification", "fig3_zero_shot_seeds_paired",
          _and(_pair(_BD, _NM), _contains("item", "COVID")), where="Fig. 3"),
    Claim("MEDBind", "MEDBind_BD beats MEDBind_NM in cross-modal zero-shot classification", "table3_seeds_paired",
          _pair(_BD, _NM), where="Table 3"),
    Claim("MEDCSP", "Cross-source pre-training helps text->image retrieval (MEDCSP > its untrained architecture)",
          "medcsp_head_to_head", _and(_pair(_CSP, _CSP_UNTRAINED, "a", "b"), _col("metric", "R@10")),
          where="Tables 1, 5"),
    Claim("MEDCSP", "... and zero-shot COVID classification", "medcsp_head_to_head",
          _and(_pair(_CSP, _CSP_UNTRAINED, "a", "b"), _col("set", "covid")), where="Table 2"),
    Claim("MEDCSP", "Every loss ablation (and the single-source model) falls below the full model in COVID F1",
          "medcsp_fig7_ablations", _and(_col("b", _CSP), _col("set", "covid"), _col("metric", "f1"),
                                        lambda d: d["a"] != _CSP_UNTRAINED), sign=-1, where="Fig. 7"),
    Claim("MEDCSP", "MEDCSP beats F-LSTM, F-CNN, RAIM and DCMN on the in-ICU tasks", "medcsp_ehr_tasks_paired",
          _and(_col("b", "f_lstm", "f_cnn", "raim", "dcmn"), _col("task", "arf", "shock", "mortality")),
          where="Fig. 5"),
    Claim("MEDCSP", "L_P aligns a patient's EHR and CXR records (the premise of Figure 8)", "medcsp_mechanisms",
          _col("term", "L_P"), where="3.4.1, Fig. 8"),
    Claim("MEDCSP", "L_A aligns the modalities within a record", "medcsp_mechanisms", _col("term", "L_A"),
          where="3.3"),
    Claim("MEDCSP", "L_D brings patients with similar diagnosis histories together (Figure 9)", "medcsp_mechanisms",
          _col("term", "L_D"), where="3.4.2, Fig. 9"),
)


def _verdict(lo: float, hi: float, diff: float, sign: int) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "direction only: " + ("as the paper" if diff * sign > 0 else "against the paper") + " (no CI)"
    if (lo > 0 and sign > 0) or (hi < 0 and sign < 0):
        return "reproduces"
    if (hi < 0 and sign > 0) or (lo > 0 and sign < 0):
        return "reversed"
    return "not shown (CI holds 0)"


def _normalise(d: pd.DataFrame) -> pd.DataFrame:
    """The paired tables' columns under one set of names (a, b, what, diff, lo, hi, seeds, patients, seed_sd): the
    MEDBind tables name the rows ``system_a`` / ``system_b`` (their ``a`` / ``b`` are values), MEDCSP's ``a`` / ``b``."""
    a, b = (d["system_a"], d["system_b"]) if "system_a" in d else (d["a"], d["b"])
    if "item" in d:
        what = d["item"].astype(str)
    elif "measure" in d:
        what = d["measure"].astype(str)
    else:
        what = d["task" if "task" in d else "set"].astype(str) + " " + d["metric"].astype(str)
    nan = pd.Series(math.nan, index=d.index)
    return pd.DataFrame({"a": a, "b": b, "what": what, "diff": d["a_minus_b"], "lo": d["lo"], "hi": d["hi"],
                         "seeds": d["n_pretrain_seeds"] if "n_pretrain_seeds" in d else pd.Series(1, index=d.index),
                         "patients": d["n_patients"] if "n_patients" in d else nan,
                         "seed_sd": d["seed_sd"] if "seed_sd" in d else nan})


def claim_rows(tables_dir: Path, claims=CLAIMS) -> pd.DataFrame:
    """One row per (claim, table row): our number, CI, seeds, test patients and the verdict; a claim whose table is
    missing gets one row saying so."""
    out = []
    for c in claims:
        f = Path(tables_dir) / f"{c.table}.csv"
        base = {"paper": c.paper, "claim": c.text, "where": c.where, "table": c.table}
        if not f.is_file():
            out.append({**base, "verdict": "not run (table missing)"})
            continue
        raw = pd.read_csv(f)
        d = _normalise(raw[c.select(raw)]) if len(raw) else raw
        if not len(d):
            out.append({**base, "verdict": "no row in this run"})
        for _, r in d.iterrows():
            out.append({**base, "comparison": f"{row_label(r['a'])} - {row_label(r['b'])}", "measure": r["what"],
                        "ours": r["diff"], "lo": r["lo"], "hi": r["hi"], "seed_sd": r["seed_sd"],
                        "rests_on": rests_on(int(r["seeds"]), None if pd.isna(r["patients"]) else int(r["patients"])),
                        "verdict": _verdict(float(r["lo"]), float(r["hi"]), float(r["diff"]), c.sign)})
    return pd.DataFrame(out)


def _num(r) -> str:
    if pd.isna(r.get("ours", math.nan)):
        return ""
    ci = f" [{r['lo']:+.1f}, {r['hi']:+.1f}]" if pd.notna(r["lo"]) else ""
    sd = f", seed SD {r['seed_sd']:.2g}" if pd.notna(r.get("seed_sd", math.nan)) else ""
    return f"{r['ours']:+.3g}{ci}{sd}"


def render(rows: pd.DataFrame, profile: str, env: dict) -> str:
    """Markdown: a header saying which run and commit made it, a summary count, then one table per paper."""
    counts = rows["verdict"].str.replace(r" \(.*", "", regex=True).value_counts()
    head = [f"# Results: do the papers' claims reproduce? (`{profile}` profile)", "",
            f"Generated by `python -m medbind_lib.reports.results_page --profile {profile}` from the run of commit "
            f"`{env.get('git_commit', '?')[:7]}` created {env.get('created', '?')} "
            f"({env.get('device', {}).get('cpu_count', '?')} CPU cores, CUDA {env.get('device', {}).get('cuda')}). "
            "Nothing here is typed by hand: each row is a paired difference (a - b) from the run's tables, with its "
            "patient-bootstrap 95% CI, averaged over the pre-training seeds named under 'rests on'. Reproduces = "
            "our CI lies on the paper's side of 0; reversed = on the other side; not shown = it holds 0. The "
            "synthetic cohort is not MIMIC: a verdict here says whether the suite's pipeline recovers the effect "
            "the cohort was built to carry, not whether the paper is right.", "",
            "Verdict counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()), ""]
    body = []
    for paper, d in rows.groupby("paper", sort=False):
        body += [f"## {paper}", "", "| claim | where | comparison | measure | ours [95% CI] | rests on | verdict |",
                 "|---|---|---|---|---|---|---|"]
        for _, r in d.iterrows():
            cells = [r["claim"], r["where"], r.get("comparison", ""), r.get("measure", ""), _num(r),
                     r.get("rests_on", ""), r["verdict"]]
            body.append("| " + " | ".join("" if pd.isna(c) else str(c).replace("|", "/") for c in cells) + " |")
        body.append("")
    return "\n".join(head + body)


def write_page(cfg, out: Path) -> pd.DataFrame:
    L = RunLayout(cfg)
    env = json.loads(L.env.read_text()) if L.env.is_file() else {}
    rows = claim_rows(L.tables)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(rows, cfg["profile"], env) + "\n")
    return rows


def main(argv=None) -> None:
    from ..config import load_profile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--out", default="docs/RESULTS.md")
    a = ap.parse_args(argv)
    rows = write_page(load_profile(a.profile), Path(a.out))
    print(f"{a.out}: {len(rows)} rows; " + ", ".join(f"{k}: {v}" for k, v in rows["verdict"].value_counts().items()))


if __name__ == "__main__":
    main()
