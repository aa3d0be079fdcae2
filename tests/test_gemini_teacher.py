"""The `gemini` teacher through `lib.data.generate_solutions`, with the real google-genai SDK
talking to a local fake of the Batch API (tests/fake_gemini.py)."""

import json
import warnings

import pytest

from lib import data, fingerprints, io, params, problems, styles
from lib.paths import RunPaths
from lib.teachers import gemini, reference

from fake_gemini import MODELS, FakeGemini, text_response

KEY = "FAKE-KEY-1234567890"
ROWS = problems.generate("easy", 6, seed=0)
BY_ID = {r["id"]: r for r in ROWS}
FAST = {  # poll and retry in milliseconds
    "poll_interval_s": 0.01,
    "poll_max_interval_s": 0.05,
    "poll_timeout_s": 10.0,
    "retry_initial_delay_s": 0.01,
}


@pytest.fixture(autouse=True)
def api_key_env(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


@pytest.fixture
def servers():
    started = []

    def start(responder=None, **kwargs):
        fake = FakeGemini(responder or correct, api_key=KEY, **kwargs).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


def correct(key, request):
    """A right answer in the requested style (the style read back from the system prompt)."""
    system = request["systemInstruction"]["parts"][0]["text"]
    style = "cod" if system == styles.COD_PROMPT else "cot"
    return {"text": reference.rewrite(BY_ID[key], style)}


def setup_run(home, fake, style="cot", **gemini):
    cfg = params.resolve(
        "tiny", style, "easy", {"data.teacher": "gemini", "data.gemini": {"base_url": fake.url, **FAST, **gemini}}
    )
    rp = RunPaths("tiny", style, "easy")
    io.write_jsonl(rp.train_problems, ROWS)
    return cfg, rp


def kept(rp):
    return {r["id"]: r for r in io.read_jsonl(rp.teacher_output).rows} if rp.teacher_output.exists() else {}


def rejected(rp):
    return {r["id"]: r for r in io.read_jsonl(rp.teacher_rejected).rows} if rp.teacher_rejected.exists() else {}


@pytest.mark.parametrize("style", ["cot", "cod"])
def test_job_succeeds(home, servers, style):
    fake = servers()
    cfg, rp = setup_run(home, fake, style=style)
    out = data.generate_solutions(cfg, rp, progress=False)
    assert out["requested"] == 6 and out["skipped_done"] == 0
    assert set(kept(rp)) == set(BY_ID) and not rejected(rp)
    assert all(r["correct"] and r["teacher"] == "gemini" and r["style"] == style for r in kept(rp).values())
    # each row names the model asked for and the version the service says answered
    assert {(r["teacher_model"], r["model_version"]) for r in kept(rp).values()} == {
        ("gemini-3.8-flash", MODELS["gemini-3.8-flash"])
    }

    (job,) = fake.created()
    assert job.source == "file"  # its result lines carry the keys back; inlined responses may not
    assert sorted(job.keys) == sorted(BY_ID)
    for key, request in zip(job.keys, job.requests):  # one request per problem, the style's prompt
        assert request["systemInstruction"]["parts"][0]["text"] == styles.system_prompt(style)
        assert request["contents"] == [{"role": "user", "parts": [{"text": BY_ID[key]["question"]}]}]
        # Google's settings for Gemini 3: temperature 1.0, thinking at the level params name
        assert request["generationConfig"] == {
            "temperature": 1.0,
            "maxOutputTokens": 8192,
            "thinkingConfig": {"thinkingLevel": "LOW"},
        }
    kinds = [c["kind"] for c in fake.calls]
    assert kinds[0] == "model"  # the model is checked before anything is submitted
    assert kinds[1:4] == ["upload_start", "upload", "create"] and kinds[-1] == "download"
    # each row: why it finished and what it cost; the stage's figures sum the cost
    assert {r["finish_reason"] for r in kept(rp).values()} == {"STOP"}
    assert all(r["usage"]["thought_tokens"] == 30 for r in kept(rp).values())
    summary = data.teacher_cost(list(kept(rp).values()))
    assert summary["teacher_thought_tokens"] == 6 * 30 and summary["teacher_total_tokens"] == 6 * 120
    assert summary["finish_reasons"] == {"STOP": 6}
    assert rp.teacher_results(job.name).exists()  # the results as downloaded, kept
    assert all(c["path"].startswith(("/v1beta/", "/upload/v1beta/")) for c in fake.calls)
    assert fake.keys_seen == {KEY}

    state = io.read_json(rp.teacher_state)
    assert state["job_name"] == job.name and state["collected"] and state["submitted_ids"] == [r["id"] for r in ROWS]
    assert state["model"] == "gemini-3.8-flash" and state["source"] == job.source
    assert state["model_info"]["version"] == MODELS["gemini-3.8-flash"]

    # A re-run asks for nothing and does not touch the API.
    n_calls = len(fake.calls)
    again = data.generate_solutions(cfg, rp, progress=False)
    assert again["requested"] == 0 and again["skipped_done"] == 6
    assert len(fake.calls) == n_calls


def test_failed_job_names_job_and_state(home, servers):
    fake = servers(final_state="BATCH_STATE_FAILED")
    cfg, rp = setup_run(home, fake)
    with pytest.raises(gemini.GeminiJobError) as err:
        data.generate_solutions(cfg, rp, progress=False)
    (job,) = fake.created()
    assert job.name in str(err.value) and "JOB_STATE_FAILED" in str(err.value)
    assert "internal error while running the batch" in str(err.value)  # the service's reason, shown
    assert not kept(rp) and not rejected(rp)
    # A failed job is not resumed forever: the next run submits a new one.
    fake.final_state = "BATCH_STATE_SUCCEEDED"
    data.generate_solutions(cfg, rp, progress=False)
    assert len(fake.created()) == 2 and set(kept(rp)) == set(BY_ID)
    assert io.read_json(rp.teacher_state)["history"][0]["job_name"] == job.name


def _some_rows_fail(key, request):
    if key == "easy-00001":
        return {
            "error": {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}
        }
    if key == "easy-00002":
        return {"text": "Some steps.\n#### 999999"}
    if key == "easy-00003":
        return {"response": {"promptFeedback": {"blockReason": "SAFETY"}}}
    if key == "easy-00004":
        return {"text": "I am not sure."}
    return correct(key, request)


def test_failing_rows_are_rejected_with_reason_others_kept(home, servers):
    fake = servers(_some_rows_fail)
    cfg, rp = setup_run(home, fake)
    data.generate_solutions(cfg, rp, progress=False)
    assert set(kept(rp)) == {"easy-00000", "easy-00005"}
    bad = rejected(rp)
    assert set(bad) == {"easy-00001", "easy-00002", "easy-00003", "easy-00004"}
    assert "400" in bad["easy-00001"]["reason"] and "invalid argument" in bad["easy-00001"]["reason"]
    assert "does not match ground truth" in bad["easy-00002"]["reason"]
    assert "SAFETY" in bad["easy-00003"]["reason"]
    assert "no final" in bad["easy-00004"]["reason"]
    assert bad["easy-00002"]["solution"].endswith("#### 999999")  # the wrong answer is kept for review


def test_malformed_result_lines_are_recorded_and_unkeyed_ones_stay_unanswered(home, servers):
    def responder(key, request):
        if key == "easy-00002":  # cut short: the key is still readable
            return {"raw": '{"key": "easy-00002", "response": {"candidates": [{"content": '}
        if key == "easy-00004":  # garbage: no key to recover
            return {"raw": "%%% not json at all %%%"}
        if key == "easy-00005":  # valid JSON, wrong shape
            return {"raw": json.dumps({"key": "easy-00005", "reply": "?"})}
        return correct(key, request)

    fake = servers(responder, extra_result_lines=["[1, 2, 3]"])
    cfg, rp = setup_run(home, fake)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data.generate_solutions(cfg, rp, progress=False)
    assert set(kept(rp)) == {"easy-00000", "easy-00001", "easy-00003"}
    bad = rejected(rp)
    assert set(bad) == {"easy-00002", "easy-00005"}  # each with its own line's reason
    assert "malformed result line" in bad["easy-00002"]["reason"]
    assert "neither 'response' nor 'error'" in bad["easy-00005"]["reason"]
    assert all(r["reason"].startswith("teacher error:") for r in bad.values())
    # no result of its own: no row, so not counted as answered, and the next run asks again
    assert "easy-00004" not in bad and "easy-00004" not in kept(rp)
    assert any("stay unanswered" in str(w.message) for w in caught)
    fake.responder = correct
    out = data.generate_solutions(cfg, rp, progress=False)
    assert out["requested"] == 1 and sorted(fake.created()[1].keys) == ["easy-00004"]
    assert "easy-00004" in kept(rp)


def test_results_that_cannot_be_matched_write_nothing(home, servers):
    """A result keyed to a problem never submitted: the mapping cannot be trusted, so no row is
    written (none marked answered), the results stay on disk, and a re-run submits anew."""
    fake = servers(extra_result_lines=[json.dumps({"key": "never-submitted", "response": text_response("#### 1")})])
    cfg, rp = setup_run(home, fake)
    with pytest.raises(gemini.GeminiJobError, match="cannot be matched") as err:
        data.generate_solutions(cfg, rp, progress=False)
    (job,) = fake.created()
    assert "never-submitted" in str(err.value) and str(rp.teacher_results(job.name)) in str(err.value)
    assert not kept(rp) and not rejected(rp)
    assert "never-submitted" in rp.teacher_results(job.name).read_text()
    fake.extra_result_lines.clear()
    data.generate_solutions(cfg, rp, progress=False)
    assert len(fake.created()) == 2 and set(kept(rp)) == set(BY_ID)


def test_shuffled_results_are_matched_by_key(home, servers):
    fake = servers(shuffle=True)
    cfg, rp = setup_run(home, fake)
    data.generate_solutions(cfg, rp, progress=False)
    rows = kept(rp)
    assert set(rows) == set(BY_ID) and all(r["correct"] for r in rows.values())
    assert all(r["question"] == BY_ID[i]["question"] for i, r in rows.items())
    assert [
        json.loads(line)["key"] for line in rp.teacher_results(fake.created()[0].name).read_text().splitlines()
    ] == [r["id"] for r in reversed(ROWS)]  # the stand-in really did answer out of order


def test_inlined_job_without_metadata_writes_nothing(home, servers):
    """A job an older workbook created inline, answered without the metadata keys (as the real
    backend has): its results are not matched by position; nothing is written; the next run
    submits a file job."""
    from google.genai import types

    fake = servers(drop_metadata=True, shuffle=True)
    cfg, rp = setup_run(home, fake)
    client = gemini.make_client(cfg)
    src = [
        types.InlinedRequest(
            contents=[types.Content(role="user", parts=[types.Part(text=p["question"])])],
            config=types.GenerateContentConfig(system_instruction=styles.system_prompt("cot")),
            metadata={"key": p["id"]},
        )
        for p in ROWS
    ]
    job = client.batches.create(model="gemini-3.8-flash", src=src, config={"display_name": "old-inline"})
    io.write_json(
        rp.teacher_state,
        {"job_name": job.name, "display_name": "old-inline", "model": "gemini-3.8-flash", "style": "cot",
         "source": "inlined", "submitted_ids": [p["id"] for p in ROWS], "n_submitted": 6, "collected": False},
    )  # fmt: skip
    fingerprints.resume_guard(rp.teacher_output, data.teacher_settings(cfg))
    with pytest.raises(gemini.GeminiJobError, match="cannot be matched"):
        data.generate_solutions(cfg, rp, progress=False)
    assert not kept(rp) and not rejected(rp) and io.read_json(rp.teacher_state)["unmatched"]
    data.generate_solutions(cfg, rp, progress=False)
    assert set(kept(rp)) == set(BY_ID) and fake.created()[-1].source == "file"


def test_refused_mime_type_stops_before_any_job(home, servers):
    fake = servers()
    cfg, rp = setup_run(home, fake, upload_mime_type="jsonl")  # Google's own example's type, since refused
    with pytest.raises(gemini.GeminiJobError) as err:
        data.generate_solutions(cfg, rp, progress=False)
    assert "'jsonl'" in str(err.value) and "data.gemini.upload_mime_type" in str(err.value)
    assert not fake.created() and not kept(rp) and not rejected(rp)
    assert fake.statuses("upload") == [200]  # refused the way the service does: 200, an error body


def test_answers_cut_at_max_tokens_stop_the_stage(home, servers):
    def thinks_too_long(key, request):
        return {"max_tokens": True} if key != "easy-00000" else correct(key, request)

    fake = servers(thinks_too_long)
    cfg, rp = setup_run(home, fake)
    with pytest.raises(data.TeacherCutShort, match="5 of 6 teacher answers stopped at the output limit") as err:
        data.generate_solutions(cfg, rp, progress=False)
    message = str(err.value)
    assert "MAX_TOKENS" in message and "data.gemini.max_output_tokens" in message and "thought tokens 8192" in message
    bad = rejected(rp)
    assert len(bad) == 5 and {r["finish_reason"] for r in bad.values()} == {"MAX_TOKENS"}
    assert all("MAX_TOKENS" in r["reason"] and r["usage"]["thought_tokens"] == 8192 for r in bad.values())
    n_calls = len(fake.calls)
    with pytest.raises(data.TeacherCutShort):  # a re-run stops again, asking nothing
        data.generate_solutions(cfg, rp, progress=False)
    assert len(fake.calls) == n_calls
    fake.responder = correct
    cfg, rp = setup_run(home, fake, max_output_tokens=16384)  # a changed setting asks every problem again
    data.generate_solutions(cfg, rp, progress=False)
    assert set(kept(rp)) == set(BY_ID)
    # a few cut answers are rejected rows, not a stop
    cfg, rp = setup_run(home, fake, max_output_tokens=8000)
    fake.responder = lambda key, request: {"max_tokens": True} if key == "easy-00001" else correct(key, request)
    data.generate_solutions(cfg, rp, progress=False)
    assert set(rejected(rp)) == {"easy-00001"} and len(kept(rp)) == 5


def test_a_job_created_before_an_error_is_not_created_twice(home, servers):
    """Google created the job, then answered 503: the job is found by its display name, not
    created (and billed) again."""
    fake = servers(faults={"create_after": [503]})
    cfg, rp = setup_run(home, fake)
    data.generate_solutions(cfg, rp, progress=False)
    (job,) = fake.created()
    assert fake.statuses("create") == [503] and "list" in [c["kind"] for c in fake.calls]
    assert io.read_json(rp.teacher_state)["job_name"] == job.name and set(kept(rp)) == set(BY_ID)


def test_crash_while_creating_finds_the_job_on_rerun(home, servers, monkeypatch):
    fake = servers()
    cfg, rp = setup_run(home, fake)
    real = gemini._created

    def crash(*args):
        raise KeyboardInterrupt("killed between the job's creation and its name being saved")

    monkeypatch.setattr(gemini, "_created", crash)
    with pytest.raises(KeyboardInterrupt):
        data.generate_solutions(cfg, rp, progress=False)
    state = io.read_json(rp.teacher_state)
    assert state["job_name"] is None and state["display_name"] and len(fake.created()) == 1
    monkeypatch.setattr(gemini, "_created", real)
    data.generate_solutions(cfg, rp, progress=False)
    assert len(fake.created()) == 1 and set(kept(rp)) == set(BY_ID)
    assert io.read_json(rp.teacher_state)["job_name"] == fake.created()[0].name


def test_thinking_level_and_budget_together_are_refused_before_any_upload(home, servers):
    fake = servers()
    cfg, rp = setup_run(home, fake, thinking_budget=1024)  # beside the default level
    with pytest.raises(ValueError, match="thinking_level = 'low' and data.gemini.thinking_budget = 1024"):
        data.generate_solutions(cfg, rp, progress=False)
    assert "upload_start" not in [c["kind"] for c in fake.calls] and not fake.created()
    cfg, rp = setup_run(home, fake, thinking_level="", thinking_budget=1024)
    assert gemini.request_body(ROWS[0], "cot", cfg)["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024}


def test_fake_refuses_what_the_api_refuses():
    from fake_gemini import request_problem

    both = {"generationConfig": {"thinkingConfig": {"thinkingLevel": "LOW", "thinkingBudget": 10}}}
    assert "both" in request_problem(both)
    assert request_problem({"generationConfig": {"thinkingConfig": {"thinkingLevel": "ULTRA"}}})
    assert request_problem({"generationConfig": {"thinkingConfig": {"thinkingLevel": "HIGH"}}}) is None


def test_other_teachers_settings_do_not_outdate_a_run():
    """A run taught by the reference teacher never reads data.gemini: changing it (or a record
    that still holds it) leaves the run current; the teacher's own settings do count."""
    from lib import record

    cfg = params.resolve("tiny", "cot", "easy")
    changed = params.resolve("tiny", "cot", "easy", {"data.gemini.temperature": 0.3})
    assert record.stage_params(cfg, "02_train_target") == record.stage_params(changed, "02_train_target")
    assert not any(k.startswith("data.gemini.") for k in record.stage_params(cfg, "01_generate_data"))
    old = {**record.stage_params(cfg, "01_generate_data"), "data.gemini.temperature": 0.0}
    assert params.read_keys(old) == record.stage_params(cfg, "01_generate_data")
    taught = params.resolve("tiny", "cot", "easy", {"data.teacher": "gemini"})
    retaught = params.resolve("tiny", "cot", "easy", {"data.teacher": "gemini", "data.gemini.temperature": 0.3})
    assert record.stage_params(taught, "01_generate_data") != record.stage_params(retaught, "01_generate_data")


def test_429_and_500_answers_are_retried(home, servers):
    """Whoever retries (the SDK or our loop; which calls the SDK repeats may change between
    its versions): every transient answer was met, each kind of call then succeeded, and one
    job ran."""
    faults = {"upload_start": [500], "create": [429, 500], "get": [500, 429, 503], "download": [500, 429]}
    fake = servers(faults={kind: list(codes) for kind, codes in faults.items()})
    cfg, rp = setup_run(home, fake)
    data.generate_solutions(cfg, rp, progress=False)
    assert set(kept(rp)) == set(BY_ID)
    for kind, codes in faults.items():
        seen = fake.statuses(kind)
        assert [s for s in seen if s != 200][: len(codes)] == codes, (kind, seen)  # every fault was served
        assert 200 in seen[len(codes) :], (kind, seen)  # and a later call of that kind succeeded
    assert not any(fake.faults.values())
    assert len(fake.created()) == 1


def test_poll_loop_outlasts_the_sdk_retries(home, servers):
    """More transient answers in a row than the SDK's attempts: the poll loop keeps going."""
    fake = servers(faults={"get": [503] * 5})
    cfg, rp = setup_run(home, fake, retry_attempts=2)
    data.generate_solutions(cfg, rp, progress=False)
    assert set(kept(rp)) == set(BY_ID)
    assert fake.statuses("get").count(503) == 5 and fake.statuses("get")[-1] == 200


def test_interrupted_run_resumes_the_same_job(home, servers):
    fake = servers(hold=True)
    cfg, rp = setup_run(home, fake, poll_timeout_s=0.2)
    with pytest.raises(gemini.GeminiPollTimeout) as err:
        data.generate_solutions(cfg, rp, progress=False)
    (job,) = fake.created()
    message = str(err.value)
    assert job.name in message and "JOB_STATE_RUNNING" in message and "re-run" in message
    state = io.read_json(rp.teacher_state)
    assert state["job_name"] == job.name and not state["collected"]
    assert not kept(rp) and not rejected(rp)

    # "Kernel restart": a fresh call, fresh client; only the state file links the two.
    fake.release()
    out = data.generate_solutions(cfg, rp, progress=False)
    assert out["requested"] == 6
    assert set(kept(rp)) == set(BY_ID)
    assert len(fake.created()) == 1 and fake.statuses("create") == [200]


def test_crash_while_appending_resumes_without_a_new_job(home, servers, monkeypatch):
    fake = servers()
    cfg, rp = setup_run(home, fake)
    real_record, count = data._record, {"n": 0}

    def crash_after_two(*args):
        if count["n"] == 2:
            raise KeyboardInterrupt("simulated crash")
        count["n"] += 1
        real_record(*args)

    monkeypatch.setattr(data, "_record", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        data.generate_solutions(cfg, rp, progress=False)
    assert len(kept(rp)) == 2
    monkeypatch.setattr(data, "_record", real_record)
    out = data.generate_solutions(cfg, rp, progress=False)
    assert out["requested"] == 4 and out["skipped_done"] == 2
    assert set(kept(rp)) == set(BY_ID) and len(io.read_jsonl(rp.teacher_output).rows) == 6
    assert len(fake.created()) == 1


def test_answered_problems_are_never_requested_again(home, servers):
    fake = servers()
    cfg, rp = setup_run(home, fake)
    fingerprints.resume_guard(
        rp.teacher_output, data.teacher_settings(cfg)
    )  # rows of this teacher, as a first run marks them
    for pid in ("easy-00000", "easy-00003"):
        row, _ = data.validate(BY_ID[pid], reference.rewrite(BY_ID[pid], "cot"))
        io.append_jsonl(rp.teacher_output, [fingerprints.sealed(row)])
    io.append_jsonl(
        rp.teacher_rejected, [fingerprints.sealed({"id": "easy-00004", "reason": "earlier", "solution": ""})]
    )
    out = data.generate_solutions(cfg, rp, progress=False)
    assert out == {**out, "requested": 3, "skipped_done": 3}
    (job,) = fake.created()
    assert sorted(job.keys) == ["easy-00001", "easy-00002", "easy-00005"]

    # New problems later: a new job for them alone.
    extra = [{**r, "id": r["id"].replace("easy", "more")} for r in ROWS[:2]]
    BY_ID.update({r["id"]: r for r in extra})
    try:
        io.write_jsonl(rp.train_problems, ROWS + extra)
        data.generate_solutions(cfg, rp, progress=False)
    finally:
        for r in extra:
            BY_ID.pop(r["id"])
    assert len(fake.created()) == 2 and sorted(fake.created()[1].keys) == ["more-00000", "more-00001"]


def test_key_is_written_nowhere(home, servers):
    fake = servers(_some_rows_fail, hold=True)
    cfg, rp = setup_run(home, fake, poll_timeout_s=0.1)
    messages = []
    with pytest.raises(gemini.GeminiPollTimeout) as err:
        data.generate_solutions(cfg, rp, progress=False)
    messages.append(str(err.value))
    fake.release()
    data.generate_solutions(cfg, rp, progress=False)
    fake2 = servers(final_state="BATCH_STATE_FAILED")
    cfg2, rp2 = setup_run(home, fake2, style="cod")
    with pytest.raises(gemini.GeminiJobError) as err:
        data.generate_solutions(cfg2, rp2, progress=False)
    messages.append(str(err.value))

    assert fake.keys_seen == {KEY} and fake2.keys_seen == {KEY}  # the key was really used
    assert rp.teacher_state.exists() and rp.teacher_rejected.exists() and rp2.teacher_state.exists()
    (home / "reports").mkdir(exist_ok=True)
    files = [p for folder in (home / "data", home / "reports") for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    assert not any(KEY in m for m in messages)
    assert KEY not in params.dump(cfg)


def test_api_key_from_env_then_dotenv(tmp_path, monkeypatch):
    assert gemini.api_key(env_file=tmp_path / "none") == KEY
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "from-google-var")
    assert gemini.api_key(env_file=tmp_path / "none") == "from-google-var"
    monkeypatch.delenv("GOOGLE_API_KEY")
    env = tmp_path / ".env"
    env.write_text('# secrets\nOTHER=1\nexport GEMINI_API_KEY="from-dotenv"  \n')
    assert gemini.api_key(env_file=env) == "from-dotenv"
    env.write_text("GOOGLE_API_KEY=plain-value # comment\n")
    assert gemini.api_key(env_file=env) == "plain-value"
    with pytest.raises(RuntimeError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        gemini.api_key(env_file=tmp_path / "none")


def test_missing_key_stops_before_any_call(home, servers, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    fake = servers()
    cfg, rp = setup_run(home, fake)
    monkeypatch.setattr(gemini.paths, "REPO", home)  # no .env here
    with pytest.raises(RuntimeError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        data.generate_solutions(cfg, rp, progress=False)
    assert fake.calls == [] and not rp.teacher_state.exists()


def test_params_know_the_batch_teachers():
    assert params.resolve("full", "cot", "easy").data.teacher == "gemini"
    cfg = params.resolve("tiny", "cot", "easy", {"data.teacher": "local"})
    assert cfg.data.local_teacher.model == "" and cfg.data.gemini.model in MODELS
    with pytest.raises(params.ParamsError, match="reference, gemini, local"):
        params.resolve("tiny", "cot", "easy", {"data.teacher": "openai"})


def test_local_teacher_needs_a_model(home):
    cfg = params.resolve("tiny", "cot", "easy", {"data.teacher": "local"})
    rp = RunPaths("tiny", "cot", "easy")
    io.write_jsonl(rp.train_problems, ROWS)
    with pytest.raises(ValueError, match="data.local_teacher.model"):
        data.generate_solutions(cfg, rp, progress=False)


def test_local_teacher_wiring_without_vllm(home, monkeypatch):
    """The `local` teacher's plumbing (prompts through the model's chat template, greedy
    sampling, batches, rows validated and appended) with the engine stubbed out; the real
    vLLM path is the one distillation already runs."""
    from contextlib import contextmanager
    from types import SimpleNamespace

    from lib import engine, models
    from lib.teachers import local

    class Tokenizer:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt, enable_thinking):
            return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

        def __call__(self, texts):  # the prompt-length check before the engine: a token per word
            return {"input_ids": [t.split() for t in texts]}

    seen = {}

    class LLM:
        def generate(self, prompts, sampling, use_tqdm):
            seen.setdefault("batches", []).append(len(prompts))
            seen["temperature"] = sampling.temperature
            by_question = {r["question"]: r for r in ROWS}
            outs = []
            for prompt in prompts:
                assert prompt.startswith("<system>" + styles.COD_PROMPT)
                problem = by_question[prompt.split("<user>")[1].removesuffix("<assistant>")]
                text, finish = reference.rewrite(problem, "cod"), "stop"
                if problem["id"] == "easy-00005":  # cut at max_tokens, as vLLM says
                    text, finish = text[:20], "length"
                outs.append(SimpleNamespace(outputs=[SimpleNamespace(text=text, finish_reason=finish)]))
            return outs

    @contextmanager
    def running(cfg, model, **kwargs):
        seen["model"] = model
        yield SimpleNamespace(llm=LLM())

    monkeypatch.setattr(models, "load_tokenizer", lambda name, revision=None: Tokenizer())
    monkeypatch.setattr(engine, "running", running)
    monkeypatch.setattr(
        engine, "sampling", lambda cfg, max_tokens: SimpleNamespace(temperature=0.7, max_tokens=max_tokens)
    )
    cfg = params.resolve(
        "tiny",
        "cod",
        "easy",
        {"data.teacher": "local", "data.local_teacher": {"model": "some/chat-model", "batch_size": 4}},
    )
    rp = RunPaths("tiny", "cod", "easy")
    io.write_jsonl(rp.train_problems, ROWS)
    out = data.generate_solutions(cfg, rp, progress=False)
    assert out["requested"] == 6 and set(kept(rp)) == set(BY_ID) - {"easy-00005"}
    assert all(r["teacher"] == "local" and r["finish_reason"] == "stop" for r in kept(rp).values())
    assert rejected(rp)["easy-00005"]["finish_reason"] == "length"  # one cut answer: a rejected row, not a stop
    assert seen == {"model": "some/chat-model", "batches": [4, 2], "temperature": 0.0}
    seen.clear()
    assert list(local.generate(cfg, rp, [], "cod")) == [] and seen == {}  # nothing to do: no engine


# --- as strict as the service --------------------------------------------------------------


def test_batches_and_files_exist_only_under_v1beta(home, servers):
    """google-genai's own default (v1) has no batches or files: the fake answers 404 there,
    as Google does, so a teacher on the SDK default fails here."""
    from google.genai import errors

    fake = servers()
    cfg, rp = setup_run(home, fake, api_version="v1")
    with pytest.raises(errors.ClientError) as err:
        data.generate_solutions(cfg, rp, progress=False)
    assert err.value.code == 404 and not fake.created()
    assert fake.statuses("wrong_version") == [404]
    client = gemini.make_client(setup_run(home, fake, api_version="")[0])
    assert client._api_client._http_options.api_version == "v1beta"  # "" means v1beta, not the SDK's v1


def test_unknown_model_stops_before_submitting(home, servers):
    fake = servers()
    cfg, rp = setup_run(home, fake, model="gemini-2.5-flash")  # retired
    with pytest.raises(gemini.GeminiModelError) as err:
        data.generate_solutions(cfg, rp, progress=False)
    message = str(err.value)
    assert "'gemini-2.5-flash'" in message and "data.gemini.model" in message and "--set data.gemini.model=" in message
    assert "NOT_FOUND" in message
    assert [c["kind"] for c in fake.calls] == ["model"]  # nothing uploaded, no job, nothing paid
    assert not rp.teacher_state.exists() and not kept(rp) and not rejected(rp)


def test_fake_answers_unknown_models_as_the_service_does(servers):
    import urllib.error
    import urllib.request

    fake = servers()

    def get(path, method="GET"):
        req = urllib.request.Request(
            fake.url + path, method=method, headers={"x-goog-api-key": KEY}, data=b"{}" if method == "POST" else None
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = get("/v1beta/models/gemini-2.5-flash")
    assert status == 404 and body["error"]["status"] == "NOT_FOUND" and body["error"]["code"] == 404
    assert "models/gemini-2.5-flash is not found" in body["error"]["message"]
    status, body = get("/v1beta/models/gemini-2.5-flash:batchGenerateContent", "POST")
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"
    status, body = get("/v1beta/models/gemini-3.8-flash")
    assert status == 200 and body["version"] == MODELS["gemini-3.8-flash"]
    for path, method in (
        ("/v1/models/gemini-3.8-flash:batchGenerateContent", "POST"),
        ("/v1/batches/x", "GET"),
        ("/upload/v1/files", "POST"),
        ("/v1/files/x:download", "GET"),
    ):
        assert get(path, method)[0] == 404, path


def test_default_model_is_one_the_service_serves():
    assert params.resolve("full", "cot", "easy").data.gemini.model in MODELS
