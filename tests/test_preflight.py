"""`python -m lib check`: the preflight reads what a grid needs (params, device, disk, the Gemini
key and model, the Hub's repositories and tokenizers) and pays for nothing."""

import subprocess
import sys

import pytest

from lib import preflight

from fake_gemini import FakeGemini

KEY = "FAKE-KEY-PREFLIGHT"


def _status(*args, **kwargs) -> dict:
    return {c.name: c.status for c in preflight.checks(*args, **kwargs)}


def _rows(lines):
    return {line.split()[1]: line.split()[0] for line in lines if line.split()[0] in ("ok", "fail", "skip")}


def test_tiny_needs_nothing_outside(home):
    lines = []
    assert preflight.main("tiny", log=lines.append) == 0
    rows = _rows(lines)
    assert rows["params"] == "ok" and rows["teacher"] == "skip" and rows["disk"] == "ok"
    assert lines[-1] == "all checks passed"


def test_bad_params_are_named_before_anything_else(home):
    lines = []
    assert preflight.main("tiny", overrides={"benchmark.k": 0}, log=lines.append) == 1
    assert lines[0].startswith("fail  params") and "benchmark.k" in lines[0]


def test_gemini_key_model_and_settings(home, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("WORKBOOK_PARAMS", str(preflight.paths.REPO / "params"))
    monkeypatch.setattr(preflight.paths, "REPO", home)  # no .env here
    with FakeGemini(lambda key, request: {"text": "#### 1"}, api_key=KEY) as fake:
        sets = {"data.teacher": "gemini", "data.gemini.base_url": fake.url}
        found = preflight.checks("tiny", ["cot"], ["easy"], sets)
        assert {c.name: c.status for c in found}["gemini key"] == "fail"
        assert "gemini model" not in {c.name for c in found}  # no key, no call
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        lines = []
        assert preflight.main("tiny", ["cot"], ["easy"], sets, log=lines.append) == 0
        assert any(line.startswith("ok    gemini model") and "gemini-3.8-flash-0902" in line for line in lines)
        lines = []
        bad = {**sets, "data.gemini.model": "gemini-2.5-flash", "data.gemini.thinking_budget": 512}
        assert preflight.main("tiny", ["cot"], ["easy"], bad, log=lines.append) == 1
        failed = [line for line in lines if line.startswith("fail")]
        assert any("gemini model" in f and "data.gemini.model" in f for f in failed)
        assert any("gemini settings" in f and "thinking_budget" in f for f in failed)
        # nothing uploaded, nothing submitted: only models.get was asked
        assert {c["kind"] for c in fake.calls} == {"model"} and not fake.created()
    assert KEY not in "\n".join(lines)


@pytest.mark.slow  # the preflight against the local Hub in a subprocess
def test_full_profile_against_the_local_hub(hub_env):
    """The `full` profile's Hub repositories resolved to commits, their sizes and one tokenizer,
    through huggingface_hub against the local Hub (a subprocess: HF_ENDPOINT is read at import)."""
    env = {**hub_env["env"], "GEMINI_API_KEY": KEY}
    with FakeGemini(lambda key, request: {"text": "#### 1"}, api_key=KEY) as fake:
        sets = ["device=cpu", f"data.gemini.base_url={fake.url}"]
        cmd = [sys.executable, "-m", "lib", "check", "--profile", "full", "--styles", "cod", "--scenarios", "easy"]
        out = subprocess.run(cmd + ["--set", *sets], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        rows = _rows(out.stdout.splitlines())
        assert rows["dataset"] == rows["target"] == rows["draft"] == rows["tokenizers"] == "ok", out.stdout
        assert "GB of weights" in out.stdout
        bad = subprocess.run(
            cmd + ["--set", *sets, "models.draft_revision=" + "f" * 40], env=env, capture_output=True, text=True
        )
        assert bad.returncode == 1 and "models.draft_revision" in bad.stdout, bad.stdout + bad.stderr
    assert not fake.created()
