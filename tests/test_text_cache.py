"""Frozen text features: shared by every encoder of a process with the same weights, persisted across processes
under $MEDBIND_TEXT_CACHE_DIR, never shared between different weights."""
from __future__ import annotations

import pytest
import torch

from medbind_lib.models import text as T

TEXTS = ["No acute cardiopulmonary process.", "Moderate cardiomegaly is present.", "Small left pleural effusion."]


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """Each test starts like a new process: no shared features, nothing known on disk."""
    monkeypatch.setattr(T, "_SHARED", {})
    monkeypatch.setattr(T, "_ON_DISK", {})
    monkeypatch.delenv(T.CACHE_DIR_ENV, raising=False)


def _encode(enc):
    tok = enc.tokenize(TEXTS)
    return enc(tok["input_ids"], tok["attention_mask"])


def test_encoders_with_the_same_weights_share_features():
    a, b = T.TextEncoder(max_length=16).freeze(), T.TextEncoder(max_length=16).freeze()
    fa = _encode(a)
    fb = _encode(b)
    assert (a.cache_misses, b.cache_misses, b.cache_hits) == (3, 0, 3)
    torch.testing.assert_close(fa, fb, rtol=0, atol=0)
    ref = T.TextEncoder(max_length=16).eval()                 # not frozen: no cache at all
    with torch.no_grad():
        torch.testing.assert_close(_encode(ref), fa, rtol=1e-5, atol=1e-5)


def test_other_weights_never_reuse_features():
    a, b = T.TextEncoder(max_length=16).freeze(), T.TextEncoder(max_length=16).freeze()
    with torch.no_grad():
        b.model.embeddings.word_embeddings.weight.mul_(1.5)
    fa, fb = _encode(a), _encode(b)
    assert a.fingerprint() != b.fingerprint() and b.cache_misses == 3
    assert not torch.allclose(fa, fb)
    b.load_state_dict(a.state_dict())                          # same weights again: the shared features serve
    _encode(b)
    assert b.cache_hits == 3


def test_features_persist_across_processes(tmp_path, monkeypatch):
    monkeypatch.setenv(T.CACHE_DIR_ENV, str(tmp_path))
    a = T.TextEncoder(max_length=16).freeze()
    fa = _encode(a)
    (f,) = T.save_text_cache()
    assert f.parent == tmp_path and f.stem == a.fingerprint()
    assert T.save_text_cache() == []                           # nothing new: no rewrite
    monkeypatch.setattr(T, "_SHARED", {})                      # a new process
    monkeypatch.setattr(T, "_ON_DISK", {})
    c = T.TextEncoder(max_length=16).freeze()
    torch.testing.assert_close(_encode(c), fa, rtol=0, atol=0)
    assert (c.cache_hits, c.cache_misses) == (3, 0)


def test_without_the_variable_nothing_is_written(tmp_path):
    _encode(T.TextEncoder(max_length=16).freeze())
    assert T.save_text_cache() == [] and not any(tmp_path.iterdir())
