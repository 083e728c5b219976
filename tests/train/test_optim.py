"""SPARCAdam: torch.optim.Adam plus the decoder constraint, fused on the CPU kernels —
the same steps as Adam with the constraint around it, the same state_dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig, certified, kernels
from sparc.model.engine import StepEngine
from sparc.train.optim import SPARCAdam

DIMS = {"a": 24, "b": 16}


def fresh(seed=0, path="auto"):
    torch.manual_seed(seed)
    m = SPARC(DIMS, SPARCConfig(n_latents=64, k=4, auxk=4, dead_after_samples=8), kernels=path).train()
    return m


def fused_here() -> bool:
    return kernels.resolve("auto", "cpu", torch.float32) == "fused"


def batches(n, B=16):
    g = torch.Generator().manual_seed(1)
    return [{s: F.normalize(torch.randn(B, d, generator=g), dim=1) for s, d in DIMS.items()} for _ in range(n)]


def reference_run(steps):
    """torch.optim.Adam with the constraint applied around it, on the PyTorch kernels."""
    m = fresh(path="pytorch")
    opt = torch.optim.Adam(m.parameters(), lr=1e-2, eps=1e-8)
    for x in batches(steps):
        m(x).losses.total.backward()
        m.remove_parallel_grad_()
        opt.step()
        m.normalize_decoder_()
        opt.zero_grad(set_to_none=True)
    return m, opt


@pytest.mark.parametrize("path", ["pytorch", "fused"])
def test_steps_equal_adam_with_the_constraint(path):
    ref, ref_opt = reference_run(6)
    m = fresh(path=path)
    engine = StepEngine(m, bf16_select="off", gradient_buffers=True)
    opt = SPARCAdam(m, lr=1e-2, eps=1e-8, engine=engine)
    for x in batches(6):
        m(x, engine=engine).losses.total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        # Adam moves every component by about lr per step whatever its size, so the relative
        # round-off of the smallest gradient components (float32 sums in another order:
        # up to ~3e-4 here) becomes an absolute difference of up to ~lr · 3e-4 per step.
        torch.testing.assert_close(p, q, rtol=1e-5, atol=2e-5, msg=name)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(opt.state[p][key], ref_opt.state[q][key], rtol=1e-4, atol=1e-9,
                                       msg=f"{name} {key}")
        assert float(opt.state[p]["step"]) == 6
    # Unit decoder rows per stream after every step.
    for col in m.cols:
        torch.testing.assert_close(m.W_dec[:, col].norm(dim=1), torch.ones(64), rtol=1e-5, atol=1e-5)
    # The state moves between the two optimizers.
    plain = torch.optim.Adam(m.parameters(), lr=1e-2)
    plain.load_state_dict(opt.state_dict())
    again = SPARCAdam(m, lr=1e-2)
    again.load_state_dict(ref_opt.state_dict())


def test_fused_step_leaves_the_shadow_of_the_new_weights():
    if not fused_here():
        pytest.skip("no fused kernels here: the optimizer leaves no shadow")
    m = fresh()
    engine = StepEngine(m, bf16_select="on")
    opt = SPARCAdam(m, lr=1e-2, engine=engine)
    buffers = None
    for x in batches(3):  # from the second step on, the new copy reuses the old one's buffers
        version = m.W_enc._version
        m(x, engine=engine).losses.total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        assert m.W_enc._version > version
        sh = engine.shadow
        assert sh is not None and sh.key == certified.shadow_key(m.W_enc, m.block_bounds)
        fresh_sh = certified.shadow_of(m.W_enc, m.block_bounds, None, m.kernels)
        assert torch.equal(sh.W16, fresh_sh.W16)
        torch.testing.assert_close(sh.wn, fresh_sh.wn, rtol=1e-5, atol=0)
        torch.testing.assert_close(sh.dwn, fresh_sh.dwn, rtol=1e-3, atol=1e-12)
        assert buffers is None or sh.W16.data_ptr() == buffers
        buffers = sh.W16.data_ptr()


@pytest.mark.parametrize("selection,topk", [("off", "global"), ("on", "global"), ("off", "local")])
def test_steps_taken_in_backward_equal_the_separate_step(selection, topk):
    """``in_backward=True``: the same parameters and state, bit for bit, as stepping after
    backward — with dead latents (AuxK codes in the same kernels) and the bf16 copy."""
    if not fused_here():
        pytest.skip("no fused kernels here: nothing is stepped in backward")
    runs = []
    for in_backward in (False, True):
        torch.manual_seed(0)
        m = SPARC(DIMS, SPARCConfig(n_latents=64, k=4, auxk=4, dead_after_samples=8, topk=topk)).train()
        engine = StepEngine(m, bf16_select=selection, gradient_buffers=True)
        opt = SPARCAdam(m, lr=1e-2, eps=1e-8, engine=engine, in_backward=in_backward)
        for i, x in enumerate(batches(5)):
            m.samples_since_fired[:, ::3] = 8  # a third of the latents dead: AuxK runs
            m(x, engine=engine).losses.total.backward()
            if in_backward:
                assert m.W_enc.grad is None and m.W_dec.grad is None
            opt.step()
            opt.zero_grad(set_to_none=True)
        runs.append((m, opt, engine))
    (a, opt_a, _), (b, opt_b, engine_b) = runs
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt_a.state[p][key], opt_b.state[q][key]), f"{name} {key}"
    if selection == "on":
        sh = engine_b.shadow
        assert sh is not None and sh.key == certified.shadow_key(b.W_enc, b.block_bounds)
        assert torch.equal(sh.W16, certified.shadow_of(b.W_enc, b.block_bounds, None, b.kernels).W16)


def test_only_the_training_forward_steps_and_once_per_optimizer_step():
    """With in_backward=True: the backward of ``encode`` steps nothing; a second backward
    before ``step()`` is refused (no gradient accumulation); a new optimizer built on the
    model takes the hook over (here: back to gradients in ``.grad``)."""
    if not fused_here():
        pytest.skip("no fused kernels here: nothing is stepped in backward")
    m = fresh()
    engine = StepEngine(m)
    opt = SPARCAdam(m, lr=1e-2, engine=engine, in_backward=True)
    x = batches(1)[0]
    before = m.W_enc.detach().clone()
    xs = {s: v.clone().requires_grad_() for s, v in x.items()}
    codes = m.encode(xs)
    torch.autograd.grad(sum(c.values.sum() for c in codes.values()), list(xs.values()))
    assert torch.equal(m.W_enc, before) and not opt.state.get(m.W_enc)
    m(x, engine=engine).losses.total.backward()
    assert not torch.equal(m.W_enc, before)
    with pytest.raises(SparcError, match="already stepped"):
        m(x, engine=engine).losses.total.backward()
    opt.zero_grad(set_to_none=True)
    plain = SPARCAdam(m, lr=1e-2, engine=engine)
    m(x, engine=engine).losses.total.backward()
    assert m.W_enc.grad is not None and m.W_dec.grad is not None
    plain.step()
