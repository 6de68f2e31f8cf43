"""MEDCSP-specific pieces (cross-source pre-training over an EHR and an imaging source). The shared layers -
readers (``datasets``), EHR features (``ehr``), training loop, text encoder, retrieval, bootstrap, tables - live
where MEDBind's do; this package holds only what belongs to MEDCSP: its records and sources (``records``)."""
