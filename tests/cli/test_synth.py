"""``sparc synth`` end to end: a planted store that train and eval take unchanged, and
eval's truth scores printed and written."""

import json

from sparc.cli.main import main
from sparc.eval import EvalReport


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_synth_train_eval(tmp_path, capsys):
    store = tmp_path / "planted"
    code, out, err = run(["synth", store, "--stream", "a=24", "b=16", "c=12", "--shared", "8", "--exclusive", "2",
                          "--parents", "1", "--rows", "600", "--nonlinear", "c"], capsys)
    assert code == 0, err
    assert "truth       planted (truth.npz): 17 concepts (8 shared, 6 exclusive, 1 parent, 2 child)" in out
    assert (store / "truth.npz").is_file()
    code, _, err = run(["train", store, "--out", tmp_path / "run", "--n-latents", "32", "--k", "4",
                        "--epochs", "2", "--batch-size", "64", "--no-progress"], capsys)
    assert code == 0, err
    code, out, err = run(["eval", tmp_path / "run", "--no-progress", "--no-probes", "--no-plots",
                          "--retrieval-queries", "20", "--null-shuffles", "0"], capsys)
    assert code == 0, err
    assert "planted truth: recovered" in out and "absorption of children into parents" in out
    data = json.loads((tmp_path / "run" / "eval-test" / "eval.json").read_text())
    truth = data["truth"]
    assert truth["n_concepts"] == 17 and truth["n_shared"] == 11 and truth["n_exclusive"] == 6
    assert [s["stream"] for s in truth["streams"]] == ["a", "b", "c"]
    assert {c["rule"] for c in truth["classification"]} == {"firing", "decoder"}
    assert len(truth["absorption"]) == 3 and 0 <= truth["recovered"] <= 1
    assert "## Planted truth" in (tmp_path / "run" / "eval-test" / "eval.md").read_text()
    # eval.json reads back with its truth, and compare takes it.
    report = EvalReport.load(tmp_path / "run" / "eval-test")
    assert report.truth is not None and report.truth.recovered == truth["recovered"]
    code, out, err = run(["compare", tmp_path / "run"], capsys)
    assert code == 0, err
    assert "## Against the planted truth" in out


def test_synth_errors_are_one_line(tmp_path, capsys):
    for args, message in ((["--active", "99"], "active (99) exceeds"), (["--stream", "a=0", "b=4"], "width of at least 1"),
                          (["--stream", "a=x", "b=4"], "width must be an integer"),
                          (["--nonlinear", "zz"], "nonlinear names no stream")):
        code, _, err = run(["synth", tmp_path / "s", *args], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "s").exists()


def test_the_flags_are_the_settings_with_their_defaults():
    # sparc synth's flags repeat PlantedSettings' fields (the streams as NAME=WIDTH): same names, same defaults.
    import dataclasses
    from pathlib import Path

    from sparc.cli.data import Synth
    from sparc.data.planted import PlantedSettings

    cli, lib = Synth(out=Path("x")), PlantedSettings()
    for f in dataclasses.fields(PlantedSettings):
        if f.name != "streams":
            assert getattr(cli, f.name) == getattr(lib, f.name), f.name
    assert cli.stream == tuple(f"{s}={d}" for s, d in lib.streams.items())
