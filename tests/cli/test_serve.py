"""``sparc serve``'s one-line errors, said before anything heavy loads. (The server itself
is tested in tests/explore/test_serve.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sparc.cli.main import main
from tests.explore.world import register_fakes, session_world

NOT_A_RUN = """
import json, sys
from sparc.cli.main import main
code = main(["serve", sys.argv[1]])
print(json.dumps({"code": code, "loaded": [m for m in ("torch", "starlette", "uvicorn") if m in sys.modules]}))
"""


def test_serve_on_a_folder_that_is_not_a_run(tmp_path):
    done = subprocess.run([sys.executable, "-c", NOT_A_RUN, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 2, "loaded": []}
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {tmp_path} holds no sparc model"), errors


@pytest.fixture
def run_dir(tmp_path_factory, monkeypatch):
    register_fakes(monkeypatch)
    return session_world(tmp_path_factory)["run"]


def test_serve_without_the_extra_says_what_to_install(run_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    assert main(["serve", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err == "error: sparc serve needs Starlette and uvicorn: pip install 'sparc-sae[serve]'\n"


def test_serve_flags_checked_before_loading(run_dir, capsys):
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    pytest.importorskip("multipart")
    assert main(["serve", str(run_dir), "--top", "0"]) == 2
    assert capsys.readouterr().err == "error: --top must be between 1 and 100, got 0\n"
