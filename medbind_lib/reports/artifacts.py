"""The rows of the MEDBind tables (``System``: which trained variant embeds each modality) and
``Artifacts``, read-only access to notebook 02's exported embeddings and checkpoints."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class System:
    """A row of a table: which variant's encoder embeds each modality (None = the system lacks it)."""
    key: str
    label: str
    cxr: str | None = None
    ecg: str | None = None
    checkpoint: str = "best"
    note: str = ""

    def variant(self, modality: str) -> str | None:
        return self.cxr if modality == "cxr" else self.ecg

    def tag(self, modality: str) -> str | None:
        v = self.variant(modality)
        return None if v is None else v + ("_untrained" if self.checkpoint == "untrained" else "")


class _Registry(dict):
    """Systems by key; ``"<key>@seed<k>"`` resolves to the same row built from the variants' seed-k replicate runs
    (``replicates.py``)."""

    def __missing__(self, key: str) -> System:
        from ..replicates import parse_run, run_name

        base, k = parse_run(key)
        b = dict.get(self, base)
        if k == 0 or b is None or b.checkpoint != "best" or (b.cxr is None and b.ecg is None):
            raise KeyError(key)
        return dataclasses.replace(b, key=key, label=f"{b.label} (seed +{k})",
                                   cxr=None if b.cxr is None else run_name(b.cxr, k),
                                   ecg=None if b.ecg is None else run_name(b.ecg, k))


def _systems(untrained_variant: str = "medbind_bd") -> dict[str, System]:
    s = [System("untrained", "Untrained (MEDBind_BD init.)", untrained_variant, untrained_variant, "untrained",
                "same architecture and seed, never trained"),
         System("clip", "CLIP (general)", note="no offline checkpoint: paper number only"),
         System("medclip", "MedCLIP-style", cxr="medclip"),
         System("cxr_clip", "CLIP InfoNCE (CXR-CLIP row)", cxr="cxr_clip",
                note="plain image-text InfoNCE: none of CXR-CLIP's image-image or text-text terms"),
         System("ecg_clip", "ECG-CLIP", ecg="ecg_clip"),
         System("medclip+ecg_clip", "Zoo: MedCLIP-style + ECG-CLIP", cxr="medclip", ecg="ecg_clip",
                note="two separately trained models"),
         System("cxr_clip+ecg_clip", "Zoo: CLIP InfoNCE + ECG-CLIP", cxr="cxr_clip", ecg="ecg_clip",
                note="two separately trained models"),
         System("medbind_nm", "MEDBind_NM", "medbind_nm", "medbind_nm"),
         System("medbind_bd", "MEDBind_BD", "medbind_bd", "medbind_bd")]
    return _Registry({x.key: x for x in s})


SYSTEMS = _systems()

# MEDCSP's rows (notebook 09's variants; the untrained reference is the `medcsp` architecture at its seed, the
# folder ``medcsp_untrained`` that notebook 09 exports once). Kept apart from SYSTEMS: MEDBind's tables list
# their rows by key and never see these.
MEDCSP_SYSTEMS: dict[str, System] = {x.key: x for x in (
    System("medcsp_untrained", "Untrained (MEDCSP init.)", cxr="medcsp", checkpoint="untrained",
           note="same architecture and seed, never trained"),
    System("medcsp_single", "MEDCSP single-source (CXR only)", cxr="medcsp_single"),
    System("medcsp_a", "MEDCSP L_A", cxr="medcsp_a"),
    System("medcsp_a_p", "MEDCSP L_A + L_P", cxr="medcsp_a_p"),
    System("medcsp_a_d", "MEDCSP L_A + L_D", cxr="medcsp_a_d"),
    System("medcsp", "MEDCSP (L_A + L_P + L_D)", cxr="medcsp"))}


def any_system(key: str) -> System:
    """A row of either method's tables by key (MEDBind's ``SYSTEMS`` first, then ``MEDCSP_SYSTEMS``)."""
    return MEDCSP_SYSTEMS[key] if key in MEDCSP_SYSTEMS else SYSTEMS[key]


def is_medcsp(variant: str) -> bool:
    from ..losses.medcsp import MEDCSP_VARIANTS
    from ..replicates import parse_run

    return parse_run(variant)[0] in MEDCSP_VARIANTS


def replicate_systems(cfg, keys) -> list[str]:
    """Keys ``<key>@seed<k>`` (k = 1 .. seed_replicates - 1) of the systems in ``keys`` whose variants all have
    seed replicates in this profile (``replicates.py``); empty when ``seed_replicates`` is 1."""
    n = int(cfg.get("seed_replicates", 1))
    rep = set(cfg.get("seed_replicate_variants", [])) & set(cfg.get("variants", []))
    out = []
    for k in range(1, n):
        for key in keys:
            s = SYSTEMS.get(key)
            mods = {v for v in (s.cxr, s.ecg) if v} if s is not None else set()
            if mods and s.checkpoint == "best" and mods <= rep:
                out.append(f"{key}@seed{k}")
    return out


class Artifacts:
    """Read-only access to notebook 02's outputs of one profile, with small caches.

    ``embeddings_dir``/<variant>[_untrained]/<dataset>.npz (``embeddings.export_embeddings``) and, for text
    encoders and training-split embeddings, the checkpoints ``runs/<profile>/02/<variant>/best.pt``."""

    def __init__(self, cfg, embeddings_dir=None, device="cpu"):
        self.cfg = cfg
        self.root = Path(embeddings_dir) if embeddings_dir is not None else Path(cfg["runs_dir"]) / "embeddings"
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
            from ..medbind.embed import load_embeddings

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
            if is_medcsp(variant):
                self._models[key] = self._medcsp_model(variant, checkpoint)
            else:
                from ..medbind.embed import _load_model

                self._models[key] = _load_model(self.cfg, variant, checkpoint, self.device)[0]
        return self._models[key]

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
        from ..medbind.embed import embed_texts

        model = self.model(variant, checkpoint)
        return lambda texts: embed_texts(model, list(texts), modality, self.device)

    def linked(self) -> dict:
        if self._linked is None:
            from ..cohort import load_linked

            self._linked = load_linked(self.cfg)
        return self._linked
