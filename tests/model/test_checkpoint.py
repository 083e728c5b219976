"""Save/load, import/export of the original checkpoint format, and the one-line errors
for bad files and bad arguments."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from safetensors.torch import save_file

from oracle import DenseSPARC
from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig
from sparc.model.reference import from_reference, to_reference

from ._util import assert_close, make_inputs, make_model


@contextlib.contextmanager
def sparc_error(match: str):
    """A SparcError whose one-line message matches ``match``."""
    with pytest.raises(SparcError, match=match) as info:
        yield info
    assert "\n" not in str(info.value)


def assert_same_outputs(m1: SPARC, m2: SPARC, x, **tol):
    m1.eval(), m2.eval()
    o1, o2 = m1(x), m2(x)
    for s in o1.codes:
        assert torch.equal(o1.codes[s].indices, o2.codes[s].indices)
        assert_close(o1.codes[s].values, o2.codes[s].values, **tol)
        assert_close(o1.recons[s], o2.recons[s], **tol)
    for ts in o1.cross_recons:
        assert_close(o1.cross_recons[ts], o2.cross_recons[ts], **tol)
    assert_close(o1.losses.total, o2.losses.total, **tol)


# ---------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_save_load_round_trip(tmp_path, dtype):
    model = make_model(dtype=dtype, topk="local", cross_coef=0.5, auxk=5, dead_after_samples=777)
    model.samples_since_fired.random_(0, 2000)  # some dead, some alive
    assert model.save(tmp_path / "m") == tmp_path / "m"
    loaded = SPARC.load(tmp_path / "m")
    assert loaded.cfg == model.cfg
    assert loaded.streams == model.streams and loaded.names == model.names
    assert loaded.cols == model.cols
    assert loaded.W_enc.dtype == dtype
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    for name in sd:
        assert torch.equal(sd[name], sd2[name]), name
    x = make_inputs(model, 6)
    assert_same_outputs(model, loaded, x, atol=0, rtol=0)
    assert loaded(x).losses.auxk["a"] > 0  # the counters came back: AuxK is on


def test_load_reads_a_model_folder_only(tmp_path):
    # A run still training holds its model in checkpoint/: the run's layout is
    # sparc.train.rundir's, which resolves it (tests/train/test_rundir.py).
    make_model().save(tmp_path / "run" / "checkpoint")
    with sparc_error("holds no sparc model.*sparc.train.rundir.load_model"):
        SPARC.load(tmp_path / "run")


def test_save_overwrites_in_place(tmp_path):
    a, b = make_model(seed=0), make_model(seed=1)
    a.save(tmp_path)
    b.save(tmp_path)
    assert torch.equal(SPARC.load(tmp_path).W_enc, b.W_enc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


# ---------------------------------------------------------------------------- reference format

STREAMS = {"dino": 6, "clip_img": 4, "clip_txt": 5}
L, K = 20, 3


def original_state(seed=0, batch_size=256):
    """An original-format state dict (float32) with counters around the dead threshold
    (256,000 samples = 1,001 'steps since last fired + 1' at batch 256)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for s, d in STREAMS.items():
        dec = torch.randn(d, L, generator=g)
        state[f"encoders.{s}.weight"] = torch.randn(L, d, generator=g) / d**0.5
        state[f"decoders.{s}.weight"] = dec / dec.norm(dim=0, keepdim=True)
        state[f"pre_biases.{s}"] = 0.1 * torch.randn(d, generator=g)
        state[f"latent_biases.{s}"] = 0.1 * torch.randn(L, generator=g)
        state[f"stats_last_nonzero_{s}"] = torch.randint(995, 1010, (L,), generator=g)
    return state


def oracle_of(state, topk, k=K, auxk=4):
    """The dense formulation run directly on the original per-stream tensors."""
    template = SPARC(STREAMS, SPARCConfig(n_latents=L, k=k, topk=topk, auxk=auxk))
    oracle = DenseSPARC(template)
    with torch.no_grad():
        for i, s in enumerate(STREAMS):
            oracle.enc[s].copy_(state[f"encoders.{s}.weight"])
            oracle.dec[s].copy_(state[f"decoders.{s}.weight"])
            oracle.pre[s].copy_(state[f"pre_biases.{s}"])
            oracle.lat[s].copy_(state[f"latent_biases.{s}"])
            # 'steps since last fired + 1' → samples since last fired at batch 256
            oracle.counters[i] = (state[f"stats_last_nonzero_{s}"] - 1) * 256
    return oracle.eval()


def check_against_oracle(model, oracle, x):
    model.eval()
    out = model(x)
    codes, recons, cross, total, _, _, auxk = oracle(x)
    tol = dict(atol=1e-5, rtol=1e-5)
    for s in STREAMS:
        assert_close(out.codes[s].dense(), codes[s], msg=f"code {s}", **tol)
        assert_close(out.recons[s], recons[s], msg=f"recon {s}", **tol)
        assert_close(out.losses.auxk[s], auxk[s], msg=f"auxk {s}", **tol)
    for ts in cross:
        assert_close(out.cross_recons[ts], cross[ts], msg=f"cross {ts}", **tol)
    assert_close(out.losses.total, total, **tol)
    assert any(v > 0 for v in out.losses.auxk.values())  # dead latents came through


def x_ref(batch=7, seed=5):
    g = torch.Generator().manual_seed(seed)
    return {s: torch.nn.functional.normalize(torch.randn(batch, d, generator=g), dim=1)
            for s, d in STREAMS.items()}


@pytest.mark.parametrize("topk", ["global", "local"])
def test_from_reference_pth_with_run_config_equals_oracle(tmp_path, topk):
    state = original_state()
    torch.save(state, tmp_path / "msae_checkpoint.pth")
    (tmp_path / "run_config.json").write_text(json.dumps(
        {"n_latents": L, "k": K, "auxk": 4, "topk_type": topk, "batch_size": 256, "lr": 1e-4}
    ))
    for source in (tmp_path / "msae_checkpoint.pth", tmp_path):  # the file or its folder
        model = SPARC.from_reference(source)
        assert model.names == list(STREAMS) and model.streams == STREAMS
        assert (model.cfg.n_latents, model.cfg.k, model.cfg.auxk, model.cfg.topk) == (L, K, 4, topk)
        for i, s in enumerate(STREAMS):
            expected = (state[f"stats_last_nonzero_{s}"] - 1) * 256
            assert torch.equal(model.samples_since_fired[i], expected)
        check_against_oracle(model, oracle_of(state, topk), x_ref())


def test_from_reference_state_dict_and_wrapped_checkpoint(tmp_path):
    state = original_state(seed=3)
    model = from_reference(state, topk="global", k=K, auxk=4)
    check_against_oracle(model, oracle_of(state, "global"), x_ref())
    # the original's full training checkpoint wraps the weights in 'model_state_dict'
    torch.save({"model_state_dict": state, "epoch": 3}, tmp_path / "ckpt.pth")
    wrapped = from_reference(tmp_path / "ckpt.pth", topk="global", k=K, auxk=4)
    assert torch.equal(wrapped.W_enc, model.W_enc)


def test_to_reference_from_reference_round_trip():
    model = make_model(dtype=torch.float32, topk="local", auxk=5)
    model.samples_since_fired.copy_(torch.randint(0, 50, model.samples_since_fired.shape) * 32)
    state = to_reference(model, batch_size=32)
    assert set(state) == {
        f"{p}{s}{q}" for s in model.names
        for p, q in [("encoders.", ".weight"), ("decoders.", ".weight"), ("pre_biases.", ""),
                     ("latent_biases.", ""), ("stats_last_nonzero_", "")]
    }
    assert state["decoders.a.weight"].shape == (model.streams["a"], model.n_latents)
    back = from_reference(state, topk="local", k=model.cfg.k, auxk=5, batch_size=32)
    assert back.cfg == model.cfg
    for name, t in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], t), name
    assert_same_outputs(model, back, make_inputs(model, 5), atol=0, rtol=0)


def test_to_reference_pth_file_round_trip(tmp_path):
    model = make_model(dtype=torch.float32, auxk=7)
    torch.save(to_reference(model), tmp_path / "msae_checkpoint.pth")
    (tmp_path / "run_config.json").write_text(json.dumps(
        {"n_latents": model.n_latents, "k": model.cfg.k, "auxk": 7, "topk_type": "global",
         "batch_size": 256}))
    back = SPARC.from_reference(tmp_path / "msae_checkpoint.pth")
    assert back.cfg == model.cfg
    assert_same_outputs(model, back, make_inputs(model, 5), atol=0, rtol=0)


# ---------------------------------------------------------------------------- errors: files


@pytest.fixture
def saved(tmp_path):
    model = make_model()
    model.save(tmp_path / "m")
    return tmp_path / "m"


@pytest.mark.parametrize("keep", [0, 5, 40, 0.5, -1])
def test_truncated_safetensors(saved, keep):
    f = saved / "model.safetensors"
    raw = f.read_bytes()
    cut = int(len(raw) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(raw) + keep)
    f.write_bytes(raw[:cut])
    with sparc_error("truncated or corrupt"):
        SPARC.load(saved)


@pytest.mark.parametrize("text", [
    "{not json",
    "",
    "[1, 2]",
    '{"streams": {"a": 5, "b": 4, "c": 3}}',
    '{"config": {"n_latents": 24, "k": 3}}',
    '{"streams": {"a": 5, "b": 4, "c": 3}, "config": {"n_latents": 24, "k": "x"}}',
    '{"streams": {"a": 5, "b": 4, "c": 3}, "config": {"n_latents": 24, "k": 3, "bogus": 1}}',
    '{"streams": {"a": 0}, "config": {"n_latents": 24, "k": 3}}',
    '{"streams": {"a": 5, "b": 4, "c": 3}, "config": {"n_latents": 24, "k": 30}}',
])
def test_garbage_config_json(saved, text):
    (saved / "config.json").write_text(text)
    with sparc_error("config|stream|k must"):
        SPARC.load(saved)


def test_binary_garbage_config_json(saved):
    (saved / "config.json").write_bytes(b"\xff\xfe\x00\x81garbage")
    with sparc_error("config"):
        SPARC.load(saved)


def test_config_json_streams_not_a_mapping(saved):
    (saved / "config.json").write_text('{"streams": [5, 4, 3], "config": {"n_latents": 24, "k": 3}}')
    with sparc_error("config"):
        SPARC.load(saved)


@pytest.mark.parametrize("remove", ["config.json", "model.safetensors", "both"])
def test_missing_files(saved, remove):
    for name in ("config.json", "model.safetensors"):
        if remove in (name, "both"):
            (saved / name).unlink()
    with sparc_error("holds no sparc model"):
        SPARC.load(saved)


def test_missing_directory(tmp_path):
    with sparc_error("holds no sparc model"):
        SPARC.load(tmp_path / "nope")


def test_checkpoint_missing_a_tensor(saved):
    model = SPARC.load(saved)
    state = {k: v for k, v in model.state_dict().items() if k != "b_lat"}
    save_file(state, str(saved / "model.safetensors"))
    with sparc_error("lacks tensors.*b_lat"):
        SPARC.load(saved)


def test_checkpoint_wrong_shape(saved):
    model = SPARC.load(saved)
    state = dict(model.state_dict())
    state["W_dec"] = state["W_dec"][:, :-1].contiguous()
    save_file(state, str(saved / "model.safetensors"))
    with sparc_error("W_dec has shape"):
        SPARC.load(saved)


def test_config_and_weights_do_not_belong_together(saved):
    meta = json.loads((saved / "config.json").read_text())
    meta["config"]["n_latents"] = 25
    (saved / "config.json").write_text(json.dumps(meta))
    with sparc_error("do not belong together"):
        SPARC.load(saved)


# ---------------------------------------------------------------------------- errors: reference


def test_reference_without_run_config_needs_topk_and_k(tmp_path):
    state = original_state()
    for kwargs in ({}, {"topk": "global"}, {"k": 3}):
        with sparc_error("pass topk"):
            from_reference(state, **kwargs)
    torch.save(state, tmp_path / "msae_checkpoint.pth")
    with sparc_error("pass topk"):
        from_reference(tmp_path / "msae_checkpoint.pth")
    assert from_reference(tmp_path / "msae_checkpoint.pth", topk="local", k=2).cfg.k == 2


@pytest.mark.parametrize("key", ["decoders.clip_img.weight", "pre_biases.dino", "latent_biases.clip_txt"])
def test_reference_missing_tensor(key):
    state = original_state()
    del state[key]
    with sparc_error(f"lacks {key}"):
        from_reference(state, topk="global", k=K)


@pytest.mark.parametrize("key", ["decoders.clip_img.weight", "pre_biases.dino", "encoders.clip_txt.weight"])
def test_reference_wrong_shape(key):
    state = original_state()
    state[key] = state[key][..., :-1]
    with sparc_error("shape"):
        from_reference(state, topk="global", k=K)


def test_reference_not_a_sparc_checkpoint(tmp_path):
    with sparc_error("no 'encoders"):
        from_reference({"weight": torch.zeros(3)}, topk="global", k=1)
    with sparc_error("does not exist"):
        from_reference(tmp_path / "missing.pth", topk="global", k=1)
    with sparc_error("no .pth"):
        from_reference(tmp_path, topk="global", k=1)
    raw = tmp_path / "cut.pth"
    torch.save(original_state(), raw)
    raw.write_bytes(raw.read_bytes()[:300])
    with sparc_error("cannot read"):
        from_reference(raw, topk="global", k=K)


def test_reference_garbage_run_config(tmp_path):
    torch.save(original_state(), tmp_path / "msae_checkpoint.pth")
    (tmp_path / "run_config.json").write_text("{garbage")
    with sparc_error("run_config"):
        from_reference(tmp_path / "msae_checkpoint.pth", topk="global", k=K)


@pytest.mark.parametrize("content", [torch.zeros(3), [1, 2]], ids=["tensor", "list"])
def test_reference_pth_not_a_state_dict(tmp_path, content):
    torch.save(content, tmp_path / "msae_checkpoint.pth")
    with sparc_error("state dict|checkpoint"):
        from_reference(tmp_path / "msae_checkpoint.pth", topk="global", k=K)


# ---------------------------------------------------------------------------- errors: arguments


def test_unknown_stream_name():
    model = make_model()
    x = make_inputs(model, 3)
    code = model.encode(x)["a"]
    with sparc_error("unknown stream 'd'.*a, b, c"):
        model.encode({"d": x["a"]})
    with sparc_error("unknown stream 'd'"):
        model({**x, "d": x["a"]})
    with sparc_error("unknown stream 'd'"):
        model.decode(code, "d")


def test_feature_dim_and_batch_mismatch():
    model = make_model()
    x = make_inputs(model, 3)
    with sparc_error(r"stream 'b' has features of shape \(3, 5\).*\[batch, 4\]"):
        model.encode({"a": x["a"], "b": x["a"]})
    with sparc_error("stream 'a' has features of shape"):
        model.encode({"a": x["a"][0]})
    with sparc_error("same number of rows"):
        model({"a": x["a"], "b": x["b"][:2]})
    with sparc_error("no stream given"):
        model.encode({})


def test_feature_dtype_mismatch_is_cast_or_reported():
    model = make_model(dtype=torch.float32)
    x = make_inputs(model, 3, dtype=torch.float64)
    try:
        out = model(x)
    except SparcError as e:
        assert "dtype" in str(e)
    else:
        assert out.recons["a"].dtype == torch.float32


def test_encode_rejects_unknown_topk():
    model = make_model()
    with sparc_error("topk"):
        model.encode(make_inputs(model, 3), topk="Global")


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_latents=8, k=0), "k must satisfy"),
    (dict(n_latents=8, k=-1), "k must satisfy"),
    (dict(n_latents=8, k=8), "k must satisfy"),
    (dict(n_latents=8, k=9), "k must satisfy"),
    (dict(n_latents=1, k=1), "n_latents"),
    (dict(n_latents=8, k=2, topk="glob"), "topk"),
    (dict(n_latents=8, k=2, auxk=-1), "auxk"),
    (dict(n_latents=8, k=2, cross_coef=-1.0), "cross_coef"),
    (dict(n_latents=8, k=2, dead_after_samples=0), "dead_after_samples"),
])
def test_config_validation(kwargs, match):
    with sparc_error(match):
        SPARCConfig(**kwargs)


def test_config_limits_are_accepted_and_dict_round_trip():
    for k in (1, 7):
        cfg = SPARCConfig(n_latents=8, k=k, topk="local", auxk=0)
        assert SPARCConfig.from_dict(cfg.to_dict()) == cfg
    with sparc_error("unknown key 'topx'"):
        SPARCConfig.from_dict({"n_latents": 8, "k": 2, "topx": "global"})


@pytest.mark.parametrize("streams", [{}, {"a": 0}, {"a": 3, "b": -1}, {"a": 2.5}])
def test_invalid_streams(streams):
    with sparc_error("stream"):
        SPARC(streams, SPARCConfig(n_latents=8, k=2))


# ---------------------------------------------------------------------------- stream order


def test_stream_order_survives_json_key_reordering(tmp_path):
    # Two streams of the same width: a swap would load silently with the wrong weights.
    model = make_model(dims=(4, 4, 3), names=("zeta", "alpha", "mid"))
    model.save(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert [s["name"] for s in meta["streams"]] == ["zeta", "alpha", "mid"]
    assert [s["columns"] for s in meta["streams"]] == [[0, 4], [4, 8], [8, 11]]
    (tmp_path / "config.json").write_text(json.dumps(meta, sort_keys=True))
    loaded = SPARC.load(tmp_path)
    assert loaded.names == ["zeta", "alpha", "mid"]
    x = make_inputs(model, 6)
    with torch.no_grad():
        for s in model.names:
            assert torch.equal(loaded.encode(x)[s].indices, model.encode(x)[s].indices)


def test_version_1_config_still_loads(tmp_path):
    model = make_model()
    model.save(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["version"], meta["streams"] = 1, dict(model.streams)
    (tmp_path / "config.json").write_text(json.dumps(meta))
    assert SPARC.load(tmp_path).streams == model.streams


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["streams"][1].update(columns=[4, 8]), "claims columns"),
    (lambda m: m["streams"][1].update(name="a"), "needs a new name"),
    (lambda m: m.update(version=7), "version 7"),
])
def test_inconsistent_stream_list_is_refused(tmp_path, edit, match):
    make_model().save(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    edit(meta)
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with sparc_error(match):
        SPARC.load(tmp_path)
