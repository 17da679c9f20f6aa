"""L-BFGS's curvature pairs in one block (nst_exp/core/history.py): the same numbers, one
allocation, checkpoints that load with ``weights_only=True``."""

from __future__ import annotations

import io

import pytest
import torch
from test_lbfgs_reference import ARGS, iterates, quadratic, quadratic_loss, take_steps

from nst_exp.core.history import Pairs
from nst_exp.core.lbfgs import ImageLBFGS
from nst_exp.core.pixel_lbfgs import PixelLBFGS


def test_pairs_behave_as_the_list_of_their_vectors_and_reuse_rows() -> None:
    vectors = [torch.full((2, 3), float(i)) for i in range(5)]
    pairs, plain = Pairs(3), []
    for vector in vectors:
        if len(pairs) == 3:
            pairs.pop(0), plain.pop(0)
        pairs.append(vector), plain.append(vector)
        assert len(pairs) == len(plain)
        assert all(torch.equal(a, b) for a, b in zip(pairs, plain))
        assert all(torch.equal(a, b) for a, b in zip(reversed(pairs), reversed(plain)))
        assert torch.equal(pairs[-1], plain[-1]) and pairs[-1].shape == (2, 3)
    vectors[-1].fill_(-1.0)  # a copy is stored, not the caller's tensor
    assert float(pairs[-1][0, 0]) == 4.0
    assert {row.untyped_storage().data_ptr() for row in pairs} == {pairs._block.untyped_storage().data_ptr()}
    with pytest.raises(ValueError, match="holds 3 vectors"):
        pairs.append(torch.zeros(6))  # full


@pytest.mark.parametrize("make", [lambda p: PixelLBFGS(p, pixel_scale=1.0, **ARGS), lambda p: ImageLBFGS(p, **ARGS)],
                         ids=["pixel", "image"])
def test_histories_live_in_blocks_and_checkpoint_as_plain_lists(make) -> None:
    """PixelLBFGS and ImageLBFGS keep torch's iterates bit for bit (history 5, 12 steps: the
    rows are reused); their state_dict loads with weights_only=True and continues the same."""
    a, b = quadratic(16, seed=4)
    objective, x0 = quadratic_loss(a, b), torch.zeros(1, 16)
    reference = iterates(lambda p: torch.optim.LBFGS(p, **ARGS), objective, x0, 12)
    assert torch.equal(iterates(make, objective, x0, 12), reference)
    x = torch.nn.Parameter(x0.clone())
    opt = make([x])
    at = take_steps(opt, x, objective, 7)
    state = next(iter(opt.state.values()))
    memory = state["images"][0] if "images" in state else {"dirs": state["old_dirs"], "stps": state["old_stps"]}
    assert isinstance(memory["dirs"], Pairs) and isinstance(memory["stps"], Pairs) and len(memory["dirs"]) == 5
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    y = torch.nn.Parameter(at)
    again = make([y])
    again.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(take_steps(again, y, objective, 5), take_steps(opt, x, objective, 5))
    assert torch.equal(x.detach(), reference[-1])
