"""Every system of the suite, declared once: what each pre-training variant is and which rows each table has.

Two kinds of entry, read by everything else (profile choices, models, losses, the notebook pipeline, tables):

* :class:`Variant` - a pre-training run of one method: its name and label, the method that trains it
  (``medbind``: notebook 02 / ``medcsp``: notebook 09), the encoders its model builds, the loss terms it
  optimises and the sources its records come from. A method builds the model and the loss FROM this entry
  (``medbind.pretrain.model_for_variant`` / ``MEDBindLoss``, ``medcsp.pretrain.loss_from_profile`` /
  ``MEDCSPLoss``): the variant's name is a key, never a branch.
* :class:`System` - a row of a table: which trained variant embeds each modality (``cxr`` / ``ecg``; a MEDCSP
  variant's CXR side is its image and report towers), or a row that trains nothing of the suite's (an untrained
  initialisation, a baseline trained per task, a text-only reference, a public pre-trained model).

``TABLES`` lists each table's rows in the order the table prints them. Adding a system is one entry here plus
its model code (as timm's ``register_model``: the name is the only handle the rest of the suite needs).
This module is at the bottom floor: it imports nothing of the suite.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Variant", "System", "VARIANTS", "SYSTEMS", "TABLES", "TABLE_LABELS", "METHODS", "HEADLINE", "PRETRAINED",
           "PRETRAINED_ROWS", "NEEDS_WEIGHTS",
           "UNTRAINED_REFERENCE", "variant", "variant_names", "system", "table_rows", "without_term", "label",
           "method_of", "is_variant"]

METHODS = ("medbind", "medcsp")


@dataclass(frozen=True)
class Variant:
    """A pre-training variant: ``terms`` are the loss terms it optimises (MEDBind: ``tmcl`` on each of
    ``modalities`` / ``clip`` / ``medclip`` / ``emcl``; MEDCSP: ``la``, ``lp``, ``ld``), ``modalities`` the
    encoders its model builds besides text (MEDBind) or the MEDCSP modalities it builds (``None`` = all), and
    ``sources`` the record sources its batches hold (MEDCSP: ``ehr`` and/or ``cxr``)."""
    name: str
    label: str
    method: str
    terms: tuple[str, ...]
    modalities: tuple[str, ...] | None = None
    sources: tuple[str, ...] = ()
    note: str = ""

    @property
    def stage(self) -> str:
        """The notebook that trains it."""
        return {"medbind": "02", "medcsp": "09"}[self.method]


_MB, _CSP = "medbind", "medcsp"
_VARIANTS = (
    # MEDBind (notebook 02; METHOD.md 1): the order is the schema default's training order
    Variant("ecg_clip", "ECG-CLIP", _MB, ("tmcl",), ("ecg",)),
    Variant("cxr_clip", "CLIP InfoNCE (CXR-CLIP row)", _MB, ("clip",), ("cxr",),
            note="plain image-text InfoNCE: none of CXR-CLIP's image-image or text-text terms"),
    Variant("medclip", "MedCLIP-style", _MB, ("medclip",), ("cxr",)),
    Variant("medbind_nm", "MEDBind_NM", _MB, ("tmcl",), ("cxr", "ecg")),
    Variant("medbind_bd", "MEDBind_BD", _MB, ("tmcl", "emcl"), ("cxr", "ecg")),
    # MEDCSP (notebook 09; MEDCSP.md "Losses", Figure 7's ablations)
    Variant("medcsp_a", "MEDCSP L_A", _CSP, ("la",), None, ("ehr", "cxr")),
    Variant("medcsp_a_p", "MEDCSP L_A + L_P", _CSP, ("la", "lp"), None, ("ehr", "cxr")),
    Variant("medcsp_a_d", "MEDCSP L_A + L_D", _CSP, ("la", "ld"), None, ("ehr", "cxr")),
    Variant("medcsp", "MEDCSP (L_A + L_P + L_D)", _CSP, ("la", "lp", "ld"), None, ("ehr", "cxr")),
    # L_A on the imaging records only: the EHR encoders are never built
    Variant("medcsp_single", "MEDCSP single-source (CXR only)", _CSP, ("la",), ("image", "report"), ("cxr",)),
)
VARIANTS: dict[str, Variant] = {v.name: v for v in _VARIANTS}

# each method's full system (the paper's headline row; the default variant of its loss)
HEADLINE: dict[str, str] = {"medbind": VARIANTS["medbind_bd"].name, "medcsp": VARIANTS["medcsp"].name}
# whose untrained initialisation (same architecture and seed, never trained) is MEDBind's "untrained" row
UNTRAINED_REFERENCE = HEADLINE["medbind"]


@dataclass(frozen=True)
class System:
    """A table row: which variant's encoder embeds each modality (None = the system lacks it); ``checkpoint``
    ``untrained`` = that variant's initialisation; ``kind`` says how the row gets its numbers when it embeds
    nothing of the suite's (``trained_per_task``: fitted on each task's inputs; ``text``: the language model's
    own text; ``paper``: a published number only)."""
    key: str
    label: str
    cxr: str | None = None
    ecg: str | None = None
    checkpoint: str = "best"
    note: str = ""
    kind: str = "embedding"
    reports: bool = False               # Table 4: the expert CXR report / ECG text is in the prompt

    @property
    def method(self) -> str | None:
        v = self.cxr or self.ecg
        return None if v is None else VARIANTS[v].method

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in ("cxr", "ecg") if self.variant(m))

    def variant(self, modality: str) -> str | None:
        """The run that embeds ``modality``: a trained variant, or a pre-trained row's own key (its embeddings
        folder, written from public weights by ``export.export_pretrained``)."""
        if self.kind == "pretrained":
            return self.key if modality == "cxr" else None
        return self.cxr if modality == "cxr" else self.ecg

    def tag(self, modality: str) -> str | None:
        """The embeddings folder of this row's ``modality`` (``<variant>`` or ``<variant>_untrained``)."""
        v = self.variant(modality)
        return None if v is None else v + ("_untrained" if self.checkpoint == "untrained" else "")

    def replicate(self, k: int, run_name) -> "System":
        """The same row built from its variants' seed-``k`` replicate runs (``replicates.run_name``)."""
        return dataclasses.replace(self, key=f"{self.key}@seed{k}", label=f"{self.label} (seed +{k})",
                                   cxr=None if self.cxr is None else run_name(self.cxr, k),
                                   ecg=None if self.ecg is None else run_name(self.ecg, k))


def _trained(name: str, **kw) -> System:
    """The row of one trained variant (its own encoders for every modality it has)."""
    v = VARIANTS[name]
    mods = v.modalities or ("cxr",)
    return System(name, v.label, cxr=name if ("cxr" in mods or v.method == _CSP) else None,
                  ecg=name if "ecg" in mods else None, note=v.note, **kw)


_ZOO = "two separately trained models"
_SYSTEMS = (
    System("untrained", "Untrained (MEDBind_BD init.)", UNTRAINED_REFERENCE, UNTRAINED_REFERENCE, "untrained",
           "same architecture and seed, never trained"),
    # public PRE-TRAINED image-text models (models/pretrained.py; weights named by the profile's pretrained_models)
    *(System(k, label, kind="pretrained") for k, label in (
        ("pretrained_clip", "CLIP (general, pre-trained)"), ("pretrained_biomedclip", "BiomedCLIP (pre-trained)"),
        ("pretrained_pubmedclip", "PubMedCLIP (pre-trained)"), ("pretrained_medclip", "MedCLIP (pre-trained)"),
        ("pretrained_cxr_clip", "CXR-CLIP (pre-trained)"))),
    *(_trained(n) for n in ("medclip", "cxr_clip", "ecg_clip")),
    System("medclip+ecg_clip", "Zoo: MedCLIP-style + ECG-CLIP", cxr="medclip", ecg="ecg_clip", note=_ZOO),
    System("cxr_clip+ecg_clip", "Zoo: CLIP InfoNCE + ECG-CLIP", cxr="cxr_clip", ecg="ecg_clip", note=_ZOO),
    *(_trained(n) for n in ("medbind_nm", "medbind_bd")),
    System("medcsp_untrained", "Untrained (MEDCSP init.)", cxr="medcsp", checkpoint="untrained",
           note="same architecture and seed, never trained"),
    *(_trained(n) for n in ("medcsp_single", "medcsp_a", "medcsp_a_p", "medcsp_a_d", "medcsp")),
    # rows that embed nothing of the suite's
    System("f_lstm", "F-LSTM (FIDDLE, from scratch)", kind="trained_per_task"),
    System("f_cnn", "F-CNN (FIDDLE, from scratch)", kind="trained_per_task"),
    System("raim", "RAIM (Xu et al. 2018, from scratch)", note="in-ICU tasks only", kind="trained_per_task"),
    System("dcmn", "DCMN (Feng et al. 2019, from scratch)", note="in-ICU tasks only", kind="trained_per_task"),
    System("medhmp", "MedHMP (Wang et al. 2023, pre-trained)", note="pre-trained on the EHR source's training "
           "records, then fine-tuned per task", kind="trained_per_task"),
    # Yang and Wu's (EMNLP 2021) eight multimodal models, MEDCSP's readmission baselines (Fig. 6): models.yang_wu
    *(System(f"yw_{k}", f"{name} (Yang & Wu 2021, from scratch)", note="readmission only", kind="trained_per_task")
      for k, name in (("bert_lstm", "MBertLstm"), ("lstm_bert", "MLstmBert"), ("bert_star", "MBertStar"),
                      ("star_bert", "MStarBert"), ("bert_encoder", "MBertEncoder"), ("encoder_bert", "MEncoderBert"),
                      ("bert_cnn", "MBertCnn"), ("cnn_bert", "MCnnBert"))),
    System("task_text", "Task text only (reference)", note="no CXR/ECG information at all", kind="text"),
    System("text_only", "Text-only (+ expert CXR/ECG reports)", kind="text", reports=True),
)
SYSTEMS: dict[str, System] = {s.key: s for s in _SYSTEMS}
# each pre-trained row's family (models/pretrained.py) and the weights the paper profile names (hub id or a path
# under ``pretrained_dir``); the MEDCSP paper names no CLIP variant: ViT-B/16 is our default
PRETRAINED: dict[str, dict[str, str]] = {
    "pretrained_clip": {"family": "open_clip", "source": "ViT-B-16", "pretrained": "openai"},
    "pretrained_biomedclip": {"family": "open_clip",
                              "source": "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"},
    "pretrained_pubmedclip": {"family": "hf_clip", "source": "flaviagiammarino/pubmed-clip-vit-base-patch32"},
    "pretrained_medclip": {"family": "medclip_release", "source": "medclip-vit"},
    "pretrained_cxr_clip": {"family": "cxr_clip_release", "source": "cxr-clip/swint_mcc.tar"},
}
NEEDS_WEIGHTS = "needs pre-trained weights (paper profile)"

PRETRAINED_ROWS = tuple(PRETRAINED)

# each table's rows, in print order
TABLES: dict[str, tuple[str, ...]] = {
    "table2": ("untrained", "pretrained_clip", "medclip", "cxr_clip", "ecg_clip", "medbind_nm", "medbind_bd",
               "pretrained_biomedclip", "pretrained_pubmedclip", "pretrained_medclip", "pretrained_cxr_clip"),
    "fig2": ("untrained", "cxr_clip+ecg_clip", "medbind_nm", "medbind_bd"),
    "fig3": ("untrained", "medclip", "cxr_clip", "ecg_clip", "medbind_nm", "medbind_bd", *PRETRAINED_ROWS),
    "table3": ("untrained", "medclip+ecg_clip", "cxr_clip+ecg_clip", "medbind_nm", "medbind_bd"),
    "table4": ("task_text", "text_only", "medclip+ecg_clip", "cxr_clip+ecg_clip", "medbind_nm", "medbind_bd"),
    "radiology": ("medcsp_untrained", "medcsp_single", "medcsp_a", "medcsp_a_p", "medcsp_a_d", "medcsp",
                  "untrained", "medclip", "cxr_clip", "medbind_nm", "medbind_bd", *PRETRAINED_ROWS),
    "ablation": ("medcsp_a", "medcsp_a_p", "medcsp_a_d", "medcsp_single", "medcsp"),
    "ehr_tasks": ("medcsp", "medcsp_untrained", "f_lstm", "f_cnn", "raim", "dcmn", "medhmp", "yw_bert_lstm", "yw_lstm_bert",
                  "yw_bert_star", "yw_star_bert", "yw_bert_encoder", "yw_encoder_bert", "yw_bert_cnn", "yw_cnn_bert",
                  "medbind_bd"),
}

# a table that names a row otherwise (Table 4 calls the CLIP InfoNCE row by the system it stands for)
# and the EHR-task table names its rows by what each one is fed
TABLE_LABELS: dict[str, dict[str, str]] = {
    "table4": {"cxr_clip+ecg_clip": "Zoo: CXR-CLIP-style + ECG-CLIP"},
    "ehr_tasks": {"medcsp": "MEDCSP (pre-trained)", "medcsp_untrained": "MEDCSP architecture, untrained",
                  "medbind_bd": "MEDBind_BD CXR+ECG + demo (other inputs)"}}


def _check() -> None:
    """The declarations agree with each other (run at import: a typo fails at once, naming the entry)."""
    for v in _VARIANTS:
        assert v.method in METHODS, v
        assert not (set(v.terms) - {"tmcl", "clip", "medclip", "emcl", "la", "lp", "ld"}), v
    for s in _SYSTEMS:
        for m in ("cxr", "ecg"):
            assert s.variant(m) is None or s.variant(m) in VARIANTS or s.kind == "pretrained", (s.key, m)
    assert set(PRETRAINED) == {s.key for s in _SYSTEMS if s.kind == "pretrained"}
    for t, rows in TABLES.items():
        unknown = sorted(set(rows) - set(SYSTEMS))
        assert not unknown and len(set(rows)) == len(rows), (t, unknown)


_check()


def variant(name: str) -> Variant:
    """The variant ``name`` (a seed replicate ``<name>@seed<k>`` resolves to its variant)."""
    base = name.partition("@seed")[0]
    if base not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {list(VARIANTS)}")
    return VARIANTS[base]


def is_variant(name: str, method: str | None = None) -> bool:
    base = name.partition("@seed")[0]
    return base in VARIANTS and (method is None or VARIANTS[base].method == method)


def variant_names(method: str, **where) -> tuple[str, ...]:
    """Names of ``method``'s variants in declaration order; ``where`` filters on fields, e.g.
    ``variant_names("medcsp", sources=("ehr", "cxr"))``."""
    return tuple(v.name for v in _VARIANTS if v.method == method
                 and all(getattr(v, k) == val for k, val in where.items()))


def without_term(name: str, term: str) -> str:
    """The variant of ``name``'s method with the same encoders and sources that lacks loss term ``term`` (the
    ablation a term is measured against: MEDBind_BD without ``emcl`` is MEDBind_NM)."""
    v = VARIANTS[name]
    found = [w.name for w in _VARIANTS if w.method == v.method and w.modalities == v.modalities
             and w.sources == v.sources and w.terms == tuple(t for t in v.terms if t != term)]
    if len(found) != 1 or term not in v.terms:
        raise KeyError(f"{name} without {term!r}: {found or 'no such variant'}")
    return found[0]


def method_of(name: str) -> str:
    return variant(name).method


def system(key: str) -> System:
    """A table row by key; ``"<key>@seed<k>"`` is the same row built from its variants' seed-k replicates (an
    untrained row: the initialisation from seed + k)."""
    if key in SYSTEMS:
        return SYSTEMS[key]
    base, sep, k = key.partition("@seed")
    b = SYSTEMS.get(base)
    if not sep or not k.isdigit() or int(k) < 1 or b is None or b.method is None:
        raise KeyError(key)
    return b.replicate(int(k), lambda v, i: f"{v}@seed{i}")


def table_rows(table: str) -> tuple[str, ...]:
    return TABLES[table]


def label(key: str, table: str | None = None) -> str:
    """The row's label, as ``table`` prints it."""
    return TABLE_LABELS.get(table, {}).get(key) or system(key).label
