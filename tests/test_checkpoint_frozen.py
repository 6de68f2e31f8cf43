"""Checkpoints leave out frozen pretrained weights; loading rebuilds them and proves they are the trained-with ones."""
import pytest
import torch
from torch import nn

from medbind_lib.trainer import frozen_keys, load_weights, model_state


class Tiny(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.tower = nn.Linear(4, 4)             # stands for a frozen pretrained text tower
        self.tower.requires_grad_(False)
        self.scale = nn.Parameter(torch.tensor(2.0), requires_grad=False)   # 0-dim frozen parameter
        self.head = nn.Linear(4, 2)
        self.register_buffer("pos", torch.arange(3))


def test_frozen_weights_are_left_out_and_restored_exactly():
    trained = Tiny()
    with torch.no_grad():
        trained.head.weight.add_(1.0)            # training moved the head only
    ck = model_state(trained)
    assert frozen_keys(trained) == ["scale", "tower.bias", "tower.weight"]
    assert set(ck["model"]) == {"head.weight", "head.bias", "pos"}
    fresh = Tiny()                               # the builder loads the same frozen weights again
    load_weights(fresh, ck, "x.pt")
    for k, v in trained.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k


def test_changed_frozen_weights_are_a_clear_error():
    ck = model_state(Tiny())
    with pytest.raises(ValueError, match="x.pt: the frozen weights"):
        load_weights(Tiny(seed=1), ck, "x.pt")   # another package version = other tower weights


def test_a_checkpoint_of_another_model_is_a_clear_error():
    ck = model_state(Tiny())
    ck["model"]["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="disagree: unexpected \\['extra.weight'\\]"):
        load_weights(Tiny(), ck, "x.pt")
    ck = model_state(Tiny())
    del ck["model"]["head.bias"]
    with pytest.raises(ValueError, match="missing \\['head.bias'\\]"):
        load_weights(Tiny(), ck, "x.pt")


def test_old_checkpoints_with_every_weight_still_load():
    full = {"model": Tiny().state_dict()}        # written before frozen weights were left out
    with pytest.raises(ValueError, match="frozen but present"):
        pass_through = Tiny()
        load_weights(pass_through, {**full, "frozen": {"keys": ["tower.weight"], "digest": "x"}}, "x.pt")
    load_weights(Tiny(), full, "x.pt")
