"""``sparc serve``'s one-line errors, said before anything heavy loads. (The server itself
is tested in tests/explore/test_serve.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sparc.cli.main import main
from tests.explore.world import register_fakes, session_world

ROOT = Path(__file__).resolve().parents[2]

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
    pytest.importorskip("python_multipart")
    assert main(["serve", str(run_dir), "--top", "0"]) == 2
    assert capsys.readouterr().err == "error: --top must be between 1 and 100, got 0\n"


SERVE = """
import sys
import pytest
from tests.explore.world import register_fakes
register_fakes(pytest.MonkeyPatch())
from sparc.cli.main import main
sys.exit(main(["serve", sys.argv[1], "--report", sys.argv[2], "--port", "0", "--no-progress"]))
"""


def test_sparc_serve_serves_until_stopped(run_dir, tmp_path):
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    pytest.importorskip("python_multipart")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(run_dir), str(tmp_path / "report")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("sparc serve: "):
                break
        assert lines and lines[-1].startswith("sparc serve: http://127.0.0.1:"), "".join(lines) + proc.stderr.read()
        assert any(line.startswith("report: ") for line in lines)  # built, as none was there
        url = lines[-1].split()[2]
        with urllib.request.urlopen(url + "api/info", timeout=30) as r:
            assert json.loads(r.read())["streams"][1] == {"name": "txt", "modality": "text"}
        body = json.dumps({"text": "a crab", "top": 2}).encode()
        request = urllib.request.Request(url + "api/query", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert "crab" in json.loads(r.read())["ranked"]["img"][0]["labels"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err
