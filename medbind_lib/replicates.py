"""Pre-training seed replicates: the same variant trained again from another seed, so that a comparison
between systems (MEDBind_BD - MEDBind_NM, BD - the encoder zoo) can be read against pre-training variance,
not only test resampling.

A replicate is a *run* named ``<variant>@seed<k>`` (k >= 1), trained with ``seed = profile seed + k`` on the
same data and splits; k = 0 is the plain variant. Both methods have them: MEDBind's runs are checkpointed in
``runs/<profile>/02/<run>/``, MEDCSP's in ``09/<run>/``, and exported to ``runs/<profile>/embeddings/<run>/`` like
any variant; MEDCSP's untrained reference too (``medcsp@seed<k>_untrained``: the initialisation from seed + k), so
its "trained - untrained" also averages over seeds. Profile keys: ``seed_replicates`` (runs per
variant, 1 = none) and ``seed_replicate_variants`` (which of ``variants`` and ``medcsp_variants`` get them).
"""
from __future__ import annotations

SEP = "@seed"

__all__ = ["run_name", "parse_run", "replicate_runs", "replicated", "n_seeds", "seed_of", "with_run_seed"]


def run_name(variant: str, k: int) -> str:
    return variant if k == 0 else f"{variant}{SEP}{k}"


def parse_run(name: str) -> tuple[str, int]:
    """``"medbind_bd@seed2"`` -> ``("medbind_bd", 2)``; a plain variant -> ``(variant, 0)``."""
    base, sep, k = name.partition(SEP)
    if not sep:
        return name, 0
    if not k.isdigit() or int(k) < 1:
        raise ValueError(f"run {name!r}: the replicate index after {SEP!r} must be an integer >= 1")
    return base, int(k)


def n_seeds(cfg) -> int:
    """Pre-training seeds of a replicated variant (1 = the plain run only)."""
    return int(cfg.get("seed_replicates", 1))


def replicated(cfg, key: str = "variants") -> list[str]:
    """The variants of the profile list ``key`` (``variants``: notebook 02, ``medcsp_variants``: 09) that get the
    extra seeds, in ``seed_replicate_variants`` order; empty when ``seed_replicates`` is 1."""
    trained = set(cfg.get(key, []))
    return [v for v in cfg.get("seed_replicate_variants", []) if v in trained] if n_seeds(cfg) > 1 else []


def replicate_runs(cfg, key: str = "variants") -> list[str]:
    """The extra runs of the notebook that trains the profile list ``key`` (k = 1 .. seed_replicates - 1, each
    replicated variant)."""
    chosen = replicated(cfg, key)
    return [run_name(v, k) for k in range(1, n_seeds(cfg)) for v in chosen]


def seed_of(cfg, run: str) -> int:
    return int(cfg["seed"]) + parse_run(run)[1]


def with_run_seed(cfg, run: str):
    """``cfg`` with the run's seed (the same object when k = 0)."""
    k = parse_run(run)[1]
    if k == 0:
        return cfg
    out = type(cfg)(cfg)
    out["seed"] = seed_of(cfg, run)
    return out
