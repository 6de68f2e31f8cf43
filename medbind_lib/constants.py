"""Names shared by the generator, the readers and the preprocessing (one source of truth)."""

# Canonical ECG lead order used everywhere after loading (PTB-XL / CPSC order, mixed-case names).
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# MIMIC-IV-ECG on-disk order: aVF BEFORE aVL (docs/DATASETS.md, MIMIC-IV-ECG). Map by name, never by index.
LEADS_MIMIC = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
# PTB-XL / ICBEB-benchmark on-disk names (upper-case aVx).
LEADS_PTBXL = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")

# MIMIC-CXR / CheXpert 14 labels, alphabetical (the order of mimic-cxr-2.0.0-chexpert.csv.gz).
CHEXPERT_LABELS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
    "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax", "Support Devices",
)
# CheXpert CSV order (train.csv / valid.csv columns after the 5 metadata columns).
CHEXPERT_CSV_LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
# The 12 CheXpert-style classes used for MIMIC-CXR in MEDBind (14 minus No Finding and Support Devices).
MIMIC_CXR_CLASSES = tuple(c for c in CHEXPERT_LABELS if c not in ("No Finding", "Support Devices"))
CHEXPERT_5X200_CLASSES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")

ECG_SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
ICBEB_CLASSES = ("NORM", "AFIB", "1AVB", "CLBBB", "CRBBB", "PAC", "VPC", "STD_", "STE_")
# CPSC2018 REFERENCE.csv integer codes -> PTB-XL benchmark scp codes.
ICBEB_REFERENCE_CODES = {1: "NORM", 2: "AFIB", 3: "1AVB", 4: "CLBBB", 5: "CRBBB", 6: "PAC", 7: "VPC",
                         8: "STD_", 9: "STE_"}
# SNOMED-CT codes of the CPSC classes in the PhysioNet/CinC Challenge headers (docs/DATASETS.md, ICBEB).
ICBEB_SNOMED = {"426783006": "NORM", "164889003": "AFIB", "270492004": "1AVB", "164909002": "CLBBB",
                "59118001": "CRBBB", "284470004": "PAC", "164884008": "VPC", "429622005": "STD_",
                "164931005": "STE_"}

COVID_CLASSES = ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia")
RSNA_CLASSES = ("Normal", "Pneumonia")

SPLITS = ("train", "valid", "test")

# Columns every manifest carries (medbind_lib.schema.validate_manifest checks them).
MANIFEST_COLUMNS = ("dataset", "record_id", "subject_id", "path", "time", "split")

# A synthetic cohort's stamp, written last into its data_root (synth.write_cohort): present = complete.
STAMP_NAME = ".synth_stamp.json"
