"""Preprocessing of the three modalities: ECG signals (ecg), chest X-rays (cxr) and texts (text)."""
