"""Profiles: ``params/<profile>.yaml`` (+ ``params/<profile>/<NN>.yaml``) validated against one schema.

Every ambiguous choice of the papers is a key with a documented default (declared in :mod:`.keys`); unknown keys
are an error listing the valid ones (papermill itself only warns). Paths resolve from the repo root and may
reference other keys as ``{key}`` (e.g. ``{data_root}/mimic-cxr-jpg``).
"""
from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Mapping

import yaml

from . import ROOT, registry
from .errors import ConfigError
from .keys import CHOICES, RANGES, SCHEMA, SUBSET_CHOICES  # noqa: F401 - re-exported: config.SCHEMA, ...
from .layout import RunLayout

PATH_KEYS = tuple(k for k in SCHEMA if k.endswith(("_root", "_dir")) or k == "medcsp_task_subjects")
PARAMS_DIR = ROOT / "params"


class Profile(dict):
    """A validated profile: a dict with attribute access and resolved absolute paths."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e

    def path(self, key: str) -> Path:
        return Path(self[key])

    def out(self, *parts) -> Path:
        """A path under runs/<profile>/, created on demand."""
        p = RunLayout(self).root.joinpath(*map(str, parts))
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def _check_keys(d: Mapping, source: str) -> None:
    """Unknown keys name the nearest valid key (a typo), not the whole schema."""
    unknown = sorted(set(d) - set(SCHEMA))
    if unknown:
        hints = []
        for k in unknown:
            near = difflib.get_close_matches(str(k), SCHEMA, n=1, cutoff=0.6)
            hints.append(f"{k!r} (did you mean {near[0]!r}?)" if near else repr(k))
        raise ConfigError(f"{source}: unknown key(s) {', '.join(hints)}; every key and its meaning: "
                          f"python -c 'from medbind_lib.config import describe; print(describe())'")


def parse_overrides(items) -> dict:
    """``["lr=0.001", "variants=[medbind_bd]"]`` -> dict (values parsed as YAML), as every CLI's ``--set``."""
    out = {}
    for kv in items or ():
        k, sep, v = kv.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {kv!r}")
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {kv!r}: the value is not valid YAML ({e})") from e
    return out


def profiles_help() -> str:
    """The shipped profiles with their one-line descriptions (for every CLI's --help)."""
    lines = ["profiles (params/<name>.yaml):"]
    for name in available_profiles():
        try:
            desc = (yaml.safe_load((PARAMS_DIR / f"{name}.yaml").read_text()) or {}).get("description", "")
        except (OSError, yaml.YAMLError):
            desc = "(unreadable)"
        lines.append(f"  {name:<10} {desc}")
    return "\n".join(lines)


def _check_types(d: Mapping, source: str) -> None:
    for k, v in d.items():
        default = SCHEMA[k][0]
        if v is None or default is None:
            continue
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) if isinstance(default, float) \
            else isinstance(v, type(default)) and (isinstance(v, bool) == isinstance(default, bool))
        if not ok:
            raise ConfigError(f"{source}: key {k!r} must be {type(default).__name__}, got {v!r}")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a profile must be a mapping of key: value")
    _check_keys(data, str(path))
    return data


def _resolve(values: dict) -> None:
    """Expand {key} references (repeatedly) and make path keys absolute from the repo root."""
    pattern = re.compile(r"\{(\w+)\}")
    for _ in range(10):
        changed = False
        for k in PATH_KEYS:
            v = values[k]
            if isinstance(v, str) and pattern.search(v):
                new = pattern.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), v)
                changed |= new != v
                values[k] = new
        if not changed:
            break
    for k in PATH_KEYS:
        if isinstance(values[k], str):
            left = pattern.findall(values[k])
            if left:
                raise ConfigError(f"key {k!r}: unknown reference(s) {left} in {values[k]!r}")
            p = Path(values[k]).expanduser()
            values[k] = str(p if p.is_absolute() else (ROOT / p).resolve())


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def load_profile(profile: str = "smoke", notebook: str | None = None, overrides: Mapping | None = None,
                 params_dir: Path | None = None) -> Profile:
    """Load ``params/<profile>.yaml``, then ``params/<profile>/<notebook>.yaml``, then ``overrides``."""
    params_dir = Path(params_dir or PARAMS_DIR)
    path = params_dir / f"{profile}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in params_dir.glob("*.yaml"))
        raise ConfigError(f"profile {profile!r} not found at {path}; available: {names}")
    values = {k: copy.deepcopy(v[0]) for k, v in SCHEMA.items()}
    layers = [(str(path), _read_yaml(path))]
    if notebook:
        nb_path = params_dir / profile / f"{notebook}.yaml"
        if nb_path.exists():
            layers.append((str(nb_path), _read_yaml(nb_path)))
    if overrides:
        _check_keys(overrides, "overrides")
        layers.append(("overrides", dict(overrides)))
    for source, layer in layers:
        _check_types(layer, source)
        values.update(copy.deepcopy(layer))
    values["profile"] = profile
    _resolve(values)
    _check_values(values)
    return Profile(values)




def _check_range(k: str, x, lo, hi, lo_ok: bool) -> None:
    if x is None:
        return
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        raise ConfigError(f"key {k!r} must be a number, got {x!r}")
    bad = (x < lo if lo_ok else x <= lo) if lo is not None else False
    bad |= hi is not None and x > hi
    if bad:
        lo_s = "" if lo is None else (f">= {lo}" if lo_ok else f"> {lo}")
        hi_s = "" if hi is None else f"<= {hi}"
        raise ConfigError(f"key {k!r} must be {' and '.join(p for p in (lo_s, hi_s) if p)}, got {x!r}")


def _check_values(v: dict) -> None:
    for key in ("split_fractions", "medcsp_task_split_fractions"):
        fr = v[key]
        if len(fr) != 3 or abs(sum(fr) - 1) > 1e-6 or min(fr) < 0:
            raise ConfigError(f"{key} must be three non-negative numbers summing to 1, got {fr}")
    for k, allowed in CHOICES.items():
        if v[k] not in allowed:
            raise ConfigError(f"key {k!r} must be one of {allowed}, got {v[k]!r}")
    for k, allowed in SUBSET_CHOICES.items():
        bad = [x for x in v[k] if x not in allowed]
        if bad or not v[k] or len(set(v[k])) != len(v[k]):
            raise ConfigError(f"key {k!r} must be a non-empty list of distinct values from {allowed}, got {v[k]!r}")
    for k, (lo, hi, lo_ok) in RANGES.items():
        _check_range(k, v[k], lo, hi, lo_ok)
    if v["n_patients"] < 10:
        raise ConfigError(f"n_patients must be at least 10, got {v['n_patients']}")
    for row, spec in (v["pretrained_models"] or {}).items():
        if row not in registry.PRETRAINED or not isinstance(spec, Mapping) or not spec.get("source") \
                or spec.get("family", registry.PRETRAINED[row]["family"]) != registry.PRETRAINED[row]["family"]:
            raise ConfigError(f"pretrained_models: {row!r} must be one of {list(registry.PRETRAINED)} and map to "
                              f"{{source: ...}} (its family is the registry's), got {spec!r}")
    if v["medhmp_dim"] % 4:
        raise ConfigError(f"medhmp_dim ({v['medhmp_dim']}) must be divisible by MedHMP's 4 attention heads")
    if v["ecg_dim"] % v["ecg_heads"]:
        raise ConfigError(f"ecg_dim ({v['ecg_dim']}) must be divisible by ecg_heads ({v['ecg_heads']})")
    _check_llm_values(v)


def _check_llm_values(v: dict) -> None:
    """Table 4 keys: choices, at least 3 distinct seeds, known tasks and systems."""
    choices = {"llm_checkpoint": ("best", "last"), "llm_admissions": ("all", "with_record"),
               "llm_pool": ("cls", "mean"), "llm_class_weighting": ("balanced", "none"),
               "llm_select": ("valid_loss", "valid_auroc", "last"),
               "llm_threshold": ("fixed_0.5", "valid_youden", "valid_accuracy")}
    for k, allowed in choices.items():
        if v[k] not in allowed:
            raise ConfigError(f"key {k!r} must be one of {allowed}, got {v[k]!r}")
    seeds = v["llm_seeds"]
    if len(set(seeds)) < 3 or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"llm_seeds must hold at least 3 distinct integer seeds, got {seeds}")
    bad = sorted(set(v["llm_tasks"]) - {"readmission", "mortality"})
    if bad or not v["llm_tasks"]:
        raise ConfigError(f"llm_tasks must be a non-empty subset of ['readmission', 'mortality'], got {v['llm_tasks']}")
    known = set(registry.table_rows("table4"))
    bad = sorted(set(v["llm_systems"]) - known)
    if bad or not v["llm_systems"]:
        raise ConfigError(f"llm_systems: unknown {bad}; known: {sorted(known)}")
    if v["llm_num_layers"] is not None and (not isinstance(v["llm_num_layers"], int) or v["llm_num_layers"] < 1):
        raise ConfigError(f"key 'llm_num_layers' must be null or a positive integer, got {v['llm_num_layers']!r}")
    for k in ("llm_max_length", "llm_modality_tokens", "llm_lora_r", "llm_epochs", "llm_batch_size", "llm_n_boot"):
        if v[k] < (0 if k == "llm_n_boot" else 1):
            raise ConfigError(f"key {k!r} must be positive, got {v[k]!r}")


def describe() -> str:
    """Markdown table of every key with its default and documentation (for the README)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{k}` | `{d!r}` | {doc} |" for k, (d, doc) in SCHEMA.items()]
    return "\n".join(rows)
