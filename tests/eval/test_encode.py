"""The evaluation's encoder is bitwise the model's, jointly and independently."""

import pytest
import torch

from sparc.eval.encode import decode, decode_all, encode_batch
from sparc.model import SPARC, SPARCConfig

DIMS = {"a": 6, "b": 5, "c": 5}


@pytest.mark.parametrize("topk", ["global", "local"])
def test_codes_equal_model_encode(topk):
    torch.manual_seed(0)
    model = SPARC(DIMS, SPARCConfig(n_latents=24, k=3, topk=topk)).eval()
    with torch.no_grad():
        model.b_lat.normal_()  # nonzero biases and pre-biases exercise every term
        model.b_pre.normal_(std=0.1)
    x = {s: torch.nn.functional.normalize(torch.randn(17, d), dim=1) for s, d in DIMS.items()}
    with torch.no_grad():
        joint, indep = encode_batch(model, x)
        ref_joint = model.encode(x)
        for s in DIMS:
            assert torch.equal(joint[s].indices, ref_joint[s].indices)
            assert torch.equal(joint[s].values, ref_joint[s].values)
            alone = model.encode({s: x[s]})[s]
            assert torch.equal(indep[s].indices, alone.indices)
            assert torch.equal(indep[s].values, alone.values)
            full = decode_all(model, joint[s])
            for t in DIMS:
                ref = model.decode(joint[s], t)
                assert torch.allclose(decode(model, joint[s], t), ref, atol=1e-6)
                assert torch.allclose(full[:, model.cols[model.stream_index(t)]], ref, atol=1e-6)
    if topk == "global":
        # Joint codes share their latents; independent ones generally do not.
        assert torch.equal(joint["a"].indices, joint["b"].indices)
        assert not torch.equal(indep["a"].indices, indep["b"].indices)
