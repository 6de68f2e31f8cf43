"""``Artifacts``, read-only access to the exported embeddings and checkpoints of notebooks 02 and 09, and the
table rows by key (``row_systems``: the registry's ``System`` entries, with a profile's untrained reference)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from .. import registry
from ..layout import RunLayout
from ..registry import System
from ..replicates import n_seeds, replicated, run_name


class _Rows(dict):
    """Rows by key (``registry.system``): ``"<key>@seed<k>"`` resolves to the same row built from the variants'
    seed-k replicate runs (``replicates.py``)."""

    def __missing__(self, key: str) -> System:
        base, sep, k = key.partition("@seed")
        if sep and k.isdigit() and int(k) >= 1 and base in self and self[base] is not registry.SYSTEMS.get(base):
            return self[base].replicate(int(k), run_name)       # a row this profile redefined (``untrained``)
        return registry.system(key)


def row_systems(untrained_variant: str = registry.UNTRAINED_REFERENCE) -> dict[str, System]:
    """Every table row by key, the ``untrained`` row being ``untrained_variant``'s initialisation
    (``EvalSettings.untrained_variant``)."""
    rows = _Rows(registry.SYSTEMS)
    u = rows["untrained"]
    if untrained_variant != u.cxr:
        rows["untrained"] = dataclasses.replace(u, cxr=untrained_variant, ecg=untrained_variant)
    return rows


SYSTEMS = row_systems()


def replicate_systems(cfg, keys) -> list[str]:
    """Keys ``<key>@seed<k>`` (k = 1 .. seed_replicates - 1) of the systems in ``keys`` whose variants all have
    seed replicates in this profile, either method's (``replicates.py``), and MEDCSP's untrained reference (each
    seed's notebook 09 exports its initialisation; MEDBind's replicates do not: its untrained row is seed 0's);
    empty when ``seed_replicates`` is 1."""
    rep = set(replicated(cfg, "variants")) | set(replicated(cfg, "medcsp_variants"))
    out = []
    for k in range(1, n_seeds(cfg)):
        for key in keys:
            s = registry.SYSTEMS.get(key)
            mods = set(s.variant(m) for m in s.modalities) if s is not None else set()
            if s is not None and s.checkpoint == "untrained" and s.method != "medcsp":
                continue
            if mods and mods <= rep:
                out.append(f"{key}@seed{k}")
    return out


class Artifacts:
    """Read-only access to notebook 02's outputs of one profile, with small caches.

    ``embeddings_dir``/<variant>[_untrained]/<dataset>.npz (``embeddings.export_embeddings``) and, for text
    encoders and training-split embeddings, the checkpoints ``runs/<profile>/02/<variant>/best.pt``."""

    def __init__(self, cfg, embeddings_dir=None, device="cpu"):
        self.cfg = cfg
        self.root = Path(embeddings_dir) if embeddings_dir is not None else RunLayout(cfg).embeddings()
        self.device = device
        self._npz: dict = {}
        self._models: dict = {}
        self._linked = None

    def path(self, tag: str, dataset: str) -> Path:
        return self.root / tag / f"{dataset}.npz"

    def has(self, tag: str | None, dataset: str) -> bool:
        return tag is not None and self.path(tag, dataset).is_file()

    def load(self, tag: str, dataset: str) -> dict:
        key = (tag, dataset)
        if key not in self._npz:
            from ..export import load_embeddings

            p = self.path(tag, dataset)
            if not p.is_file():
                raise FileNotFoundError(f"{p} missing: run notebook 02 (python -m medbind_lib.run --profile "
                                        f"{self.cfg['profile']} --only 02)")
            self._npz[key] = load_embeddings(p)
        return self._npz[key]

    def model(self, variant: str, checkpoint: str = "best"):
        """A variant's model for embedding texts or images: MEDBind's (notebook 02) or MEDCSP's (notebook 09,
        seen through ``CXRView``: image and report towers under MEDBind's names)."""
        key = (variant, checkpoint)
        if key not in self._models:
            if variant in registry.PRETRAINED:              # a public pre-trained row (export.export_pretrained)
                self._models[key] = self._pretrained_model(variant)
            elif registry.is_variant(variant, "medcsp"):
                self._models[key] = self._medcsp_model(variant, checkpoint)
            else:
                from ..medbind.embed import load_model

                self._models[key] = load_model(self.cfg, variant, checkpoint, self.device)[0]
        return self._models[key]

    def _pretrained_model(self, row: str):
        from ..export import pretrained_spec
        from ..models.pretrained import load

        spec = pretrained_spec(self.cfg, row)
        if spec is None:
            raise FileNotFoundError(f"{row}: {registry.NEEDS_WEIGHTS} (profile key pretrained_models)")
        marker = self.root / row / "pretrained.json"         # the text tower must be the one that embedded images
        if marker.is_file() and json.loads(marker.read_text()).get("spec") != spec:
            raise ValueError(f"{marker}: {row}'s embeddings come from another model than the profile names now "
                             f"({spec}); re-run notebook 01")
        return load(spec, bool(self.cfg.get("pretrained_allow_download"))).to(self.device)

    def _medcsp_model(self, variant: str, checkpoint: str):
        from ..medcsp.embed import CXRView, load_medcsp_model

        dims = None
        if checkpoint == "untrained":                     # the architecture needs notebook 08's input widths
            from ..medcsp.features import load
            from ..medcsp.pretrain import MEDCSPMethod

            dims = MEDCSPMethod.input_dims_of(load(self.cfg))
        return CXRView(load_medcsp_model(self.cfg, variant, checkpoint, self.device, input_dims=dims)[0]).eval()

    def text_encoder(self, variant: str, checkpoint: str = "best", modality: str = "cxr") -> Callable:
        """``encode_text(list[str]) -> np.ndarray [n, d]`` of the variant's trained (or untrained) text tower
        (each distinct text encoded once; the same function that exported the report embeddings)."""
        from ..export import embed_texts

        model = self.model(variant, checkpoint)
        return lambda texts: embed_texts(model, list(texts), modality, self.device)

    def linked(self) -> dict:
        if self._linked is None:
            from ..cohort import load_linked

            self._linked = load_linked(self.cfg)
        return self._linked
