"""Table 4: prompt tuning a BERT-family language model with frozen CXR / ECG embeddings (notebook 07).

Modules, in the order the notebook uses them:

- ``settings``: every Table 4 choice (profile keys ``llm_*``) in one frozen record kept with each result;
- ``tasks``: per-admission task frames (text, label, split, linked CXR/ECG record ids) from notebook 01's
  outputs and the discharge notes, every drop or mask counted in a QualityLog;
- ``features``: the Table 4 systems and the frozen embeddings of the linked records (or, for the
  text-only row, the expert report texts);
- ``model``: LoRA (peft) on the language model, one linear projection per modality inserted after the text
  with its own attention-mask entries, a classification head;
- ``train``: the seeded fine-tuning loop with model selection on the validation split;
- ``metrics``: accuracy, AUROC, balanced accuracy averaged over seeds with patient-bootstrap CIs;
- ``table``: the Table 4 builder, its paper-shaped view, figure and reading.
"""
from .settings import LLMSettings, llm_settings

__all__ = ["LLMSettings", "llm_settings"]
