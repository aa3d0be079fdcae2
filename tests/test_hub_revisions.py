"""Hub revisions (lib/hub.py): every Hub model and dataset resolved once to a commit, recorded,
and loaded at that commit afterwards, however the repository moves on the Hub; the tokenizers
of a Hub pair checked at stage 00, before any training; records judged by the commits they were
made from. Against the local Hub stand-in (tests/local_hub.py), through huggingface_hub itself."""

import json

import pytest

from conftest import REPO
from forked import Forks
from lib import hub, io, params, paths, record
from lib.paths import RunPaths

A, B, C = "a" * 40, "b" * 40, "c" * 40


def _entry(repo: str, sha: str, asked: str = "main") -> dict:
    return {"repo": repo, "asked": asked, "sha": sha}


def _pin(target_sha: str, draft_sha: str = B) -> None:
    io.write_json(
        paths.hub_revisions("full"),
        {"target": _entry("Qwen/Qwen3-14B", target_sha), "draft": _entry("Qwen/Qwen3-0.6B", draft_sha)},
    )


# --- the currency check (no Hub needed: it reads what stage 00 recorded) -----------------------


def test_a_record_made_from_another_hub_commit_is_not_current(home):
    cfg = params.resolve("full", "cot", "easy")
    rp = RunPaths("full", "cot", "easy")
    _pin(A)
    record.save(rp, "02_train_target", {}, cfg)
    saved = record.load(rp, "02_train_target")
    assert saved["settings"]["hub"]["model.target"]["sha"] == A  # the commit it was made from, recorded
    # current as to its commits (its adapter is missing here, which is what it says)
    assert "missing" in record._own_reason(rp, "02_train_target", saved, cfg)

    _pin(C)  # stage 00 resolved the target anew (e.g. its record deleted, the repo moved)
    why = record._own_reason(rp, "02_train_target", saved, cfg)
    assert "model.target" in why and A in why and C in why

    _pin(A)
    pinned = params.resolve("full", "cot", "easy", {"models.target_revision": A})
    assert "missing" in record._own_reason(
        rp, "02_train_target", saved, pinned
    )  # pinning the same commit re-runs nothing
    assert "missing" in record._own_reason(
        rp, "02_train_target", saved, params.resolve("full", "cot", "easy", {"models.target_revision": A[:10]})
    )
    other = params.resolve("full", "cot", "easy", {"models.target_revision": C})
    why = record._own_reason(rp, "02_train_target", saved, other)
    assert "models.target_revision" in why and C in why and A in why

    old = {**saved, "settings": {k: v for k, v in saved["settings"].items() if k != "hub"}}
    assert "made before Hub revisions were recorded" in record._own_reason(rp, "02_train_target", old, cfg)


def test_stage_00_of_hub_models_is_not_current_without_its_recorded_commits(home):
    cfg = params.resolve("full", "base", "easy")
    assert paths.hub_revisions("full") in record.output_files("full", "00_base_models", cfg)
    why = record.outputs_missing("full", "00_base_models", {}, cfg)
    assert "Qwen/Qwen3-14B" in why and "no Hub commit recorded" in why
    _pin(A)
    assert record.outputs_missing("full", "00_base_models", {}, cfg) is None


def test_local_records_carry_no_hub_commits_and_keep_their_digest(home):
    """The tiny profile's base pair is a folder: no revision, and records as before (the digest
    over the same four parts), so no record of a local pair is outdated by Hub revisions."""
    cfg = params.resolve("tiny", "cot", "easy")
    rp = RunPaths("tiny", "cot", "easy")
    assert hub.revision(cfg, str(rp.base_model("target"))) is None
    assert record.output_files("tiny", "00_base_models", cfg) == [paths.data_root("tiny") / "models" / "base"]
    made = record.save(rp, "02_train_target", {}, cfg)["settings"]
    assert "hub" not in made
    from lib import fingerprints

    assert made["digest"] == fingerprints.of_value({k: made[k] for k in ("params", "inputs", "input_files", "outputs")})
    assert not {k for k in record.stage_params(cfg, "06_benchmark") if k.endswith("revision")}


@pytest.mark.parametrize("value", [12, "", "  "])
def test_a_malformed_pin_is_refused_naming_its_key(value):
    cfg = params.resolve("full", "cot", "easy", {"models.draft_revision": value})
    with pytest.raises(ValueError, match=r"models\.draft_revision"):
        hub.pin_problem(cfg, {"model.draft": _entry("Qwen/Qwen3-0.6B", B)})


# --- against the local Hub -------------------------------------------------------------------

_PIN_MODELS = """
import json, sys
from lib import hub, params
cfg = params.resolve("full", "base", "easy", json.loads(sys.argv[1]))
try:
    print(json.dumps({"pinned": hub.pin_models(cfg), "target": hub.revision(cfg, cfg["models"]["target"])}))
except ValueError as exc:
    print(json.dumps({"error": str(exc)}))
"""


# What the scripts import, once per test (`Forks`): each call is still a fresh process.
_PIN_IMPORTS = ["lib.hub", "lib.params", "lib.models", "huggingface_hub:HfApi", "transformers:AutoTokenizer"]


def _other_tokenizer_repo(local_hub):
    """Qwen3-0.6B's files with another chat template: a draft that cannot serve this target."""
    from local_hub import Repo

    base = local_hub.repo("Qwen/Qwen3-0.6B")
    tok = json.loads(base.files["tokenizer_config.json"])
    tok["chat_template"] = tok["chat_template"].replace("<|im_start|>assistant", "<|im_start|>bot")
    files = {**base.files, "tokenizer_config.json": json.dumps(tok).encode()}
    return Repo("Other/Qwen3-0.6B-chat", "model", files, card=base.card)


def _call(forks: Forks, script: str, *args) -> dict:
    out = forks.run(script, *args)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # the workbook against the local Hub in a subprocess
def test_stage_00_resolves_hub_models_once_and_refuses_a_pair_of_two_tokenizers(local_hub, hub_env, tmp_path):
    with (
        local_hub.copy([_other_tokenizer_repo(local_hub)]) as h,
        Forks({**hub_env["env"], **h.env(tmp_path / "hf")}, REPO, _PIN_IMPORTS) as forks,
    ):
        target, draft = h.repo("Qwen/Qwen3-14B"), h.repo("Qwen/Qwen3-0.6B")
        first = _call(forks, _PIN_MODELS, "{}")
        assert first["pinned"]["target"] == _entry("Qwen/Qwen3-14B", target.sha)
        assert first["pinned"]["draft"]["sha"] == draft.sha and first["target"] == target.sha

        old, new = target.move("NOTICE", b"a later commit\n")  # the repository moves on the Hub
        n = len(h.calls)
        again = _call(forks, _PIN_MODELS, "{}")
        assert again["pinned"] == first["pinned"] and again["target"] == old  # resolved once: kept
        assert not [p for _, p, _ in h.calls[n:] if new in p or p.endswith("/Qwen3-14B/revision/main")]

        moved = _call(forks, _PIN_MODELS, json.dumps({"models.target_revision": new}))
        assert moved["pinned"]["target"] == _entry("Qwen/Qwen3-14B", new, asked=new) and moved["target"] == new

        unknown = _call(forks, _PIN_MODELS, json.dumps({"models.target_revision": C}))
        assert "models.target_revision" in unknown["error"] and C in unknown["error"]

        other = h.repo("Other/Qwen3-0.6B-chat")
        bad = _call(forks, _PIN_MODELS, json.dumps({"models.draft": other.repo_id}))["error"]
        assert "chat templates differ" in bad
        assert f"Qwen/Qwen3-14B at {new}" in bad and f"Other/Qwen3-0.6B-chat at {other.sha}" in bad
    recorded = io.read_json(paths.hub_revisions("full"))
    assert (
        recorded["target"]["sha"] == new and recorded["draft"]["repo"] == "Qwen/Qwen3-0.6B"
    )  # the refused pair: not recorded


_SPLIT = """
import json, sys
from lib import io, params, paths, splits
cfg = params.resolve("full", "cot", "easy", {"data.n_train": 30, "data.n_test": 8, **json.loads(sys.argv[1])})
rp = paths.RunPaths("full", "cot", "easy")
try:
    splits.ensure_problems(cfg, rp)
except ValueError as exc:
    print(json.dumps({"error": str(exc)}))
    raise SystemExit
meta = io.read_json(rp.problems_dir / "meta.json")
print(json.dumps({"train": [r["question"] for r in io.read_jsonl(rp.train_problems).rows], "meta": meta}))
"""


_SPLIT_IMPORTS = ["lib.splits", "lib.params", "datasets"]


@pytest.mark.slow  # the workbook against the local Hub in a subprocess
def test_a_split_made_again_reads_the_dataset_commit_it_was_first_made_from(local_hub, hub_env, tmp_path):
    with local_hub.copy() as h, Forks({**hub_env["env"], **h.env(tmp_path / "hf")}, REPO, _SPLIT_IMPORTS) as forks:
        gsm8k = h.repo("openai/gsm8k", "dataset")
        first = _call(forks, _SPLIT, "{}")
        assert first["meta"]["hub_revision"] == _entry("openai/gsm8k", gsm8k.sha)

        old, new = gsm8k.move("main/train-00000-of-00001.parquet", gsm8k.files["main/test-00000-of-00001.parquet"])
        rp = RunPaths("full", "cot", "easy")
        for path in (rp.train_problems, rp.test_problems, rp.problems_dir / "split.sha.json"):
            path.unlink()  # the split made again from its source
        n = len(h.calls)
        again = _call(forks, _SPLIT, "{}")
        assert again["train"] == first["train"]  # the moved head's training rows are other rows
        later = [p for _, p, _ in h.calls[n:]]
        assert any(old in p for p in later) and not [p for p in later if new in p or "/revision/main" in p]

        refused = _call(forks, _SPLIT, json.dumps({"data.hub.revision": new}))["error"]
        assert "data.hub.revision" in refused and old in refused and new in refused
