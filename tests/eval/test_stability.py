"""Stability across seeds (sparc/eval/stability.py): latents matched one to one by decoder
direction — a copy matches itself, a permuted copy is recovered, unrelated runs are not."""

import json

import pytest
import torch

from sparc.cli.main import main
from sparc.errors import SparcError
from sparc.eval.stability import render_stability, stability
from sparc.model import SPARC, SPARCConfig

STREAMS = {"a": 40, "b": 32}


def model(seed: int, n_latents: int = 48, streams=STREAMS) -> SPARC:
    torch.manual_seed(seed)
    return SPARC(streams, SPARCConfig(n_latents=n_latents, k=4))


def permuted(m: SPARC, perm: torch.Tensor) -> SPARC:
    """The same dictionary with its latents renumbered: new latent j is old latent perm[j]."""
    out = model(99)
    with torch.no_grad():
        for name in ("W_enc", "W_dec"):
            getattr(out, name).copy_(getattr(m, name)[perm])
        out.b_lat.copy_(m.b_lat[:, perm])
        out.samples_since_fired.copy_(m.samples_since_fired[:, perm])
    return out


def test_a_copy_and_a_permuted_copy_are_found_again_entirely():
    m = model(0)
    perm = torch.randperm(48, generator=torch.Generator().manual_seed(1))
    r = stability([m, model(0), permuted(m, perm)], ["a0", "copy", "perm"])
    same, shuffled, _ = r.pairs
    assert same.joint.found == 1.0 and same.joint.partner == list(range(48))
    assert all(x.found == 1.0 for x in same.streams.values())
    # old latent i is new latent j with perm[j] = i: the matching inverts the permutation
    inverse = torch.argsort(perm).tolist()
    assert shuffled.joint.partner == inverse and shuffled.streams["b"].partner == inverse
    assert r.found_in == [2] * 48 and r.stable == 1.0
    assert min(shuffled.joint.cosine) == pytest.approx(1.0, abs=1e-5)


def test_unrelated_runs_find_almost_nothing_and_one_changed_stream_breaks_the_joint_match():
    m, other = model(0), model(1)
    r = stability([m, other], ["s0", "s1"])
    assert r.pairs[0].joint.found < 0.05 and r.pairs[0].joint.median < 0.5  # random directions in 32–40 dims
    # the same dictionary in stream a, another in b: found in a, not jointly
    mixed = model(0)
    with torch.no_grad():
        mixed.W_dec[:, 40:] = other.W_dec[:, 40:]
    r = stability([m, mixed], ["s0", "mixed"])
    assert r.pairs[0].streams["a"].found == 1.0 and r.pairs[0].joint.found < 0.05
    text = render_stability(r)
    assert "| s0 | mixed | 1.000 |" in text and "found jointly" in text


def test_runs_that_cannot_be_matched_are_one_line_errors():
    with pytest.raises(SparcError, match="at least two runs"):
        stability([model(0)], ["x"])
    with pytest.raises(SparcError, match="runs of different stores cannot be matched"):
        stability([model(0), model(0, streams={"a": 40, "c": 32})], ["x", "y"])
    with pytest.raises(SparcError, match="match runs of one size"):
        stability([model(0), model(0, n_latents=64)], ["x", "y"])
    with pytest.raises(SparcError, match="threshold must be in"):
        stability([model(0), model(1)], ["x", "y"], threshold=0)


def test_sparc_compare_stability(tmp_path, capsys):
    for name, seed in (("r0", 0), ("r1", 0), ("r2", 1)):
        model(seed).save(tmp_path / name)
    code = main(["compare", "--stability", str(tmp_path / "r0"), str(tmp_path / "r1"), str(tmp_path / "r2"),
                 "--out", str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    assert code == 0 and "| r0 | r1 | 1.000 | 1.000 | 1.000 |" in out
    saved = json.loads((tmp_path / "cmp" / "stability.json").read_text())
    assert saved["runs"] == ["r0", "r1", "r2"] and len(saved["pairs"]) == 3 and saved["found_in"][0] in (1, 2)
    model(0, n_latents=64).save(tmp_path / "big")
    assert main(["compare", "--stability", str(tmp_path / "r0"), str(tmp_path / "big")]) == 2
    assert capsys.readouterr().err.startswith("error: big has 64 latents, r0 has 48")
