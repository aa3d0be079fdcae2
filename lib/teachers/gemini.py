"""The `gemini` teacher: the google-genai Batch API, as the study used it.

One request per problem, carrying the style's system instruction and the generation settings
Google documents for Gemini 3 (temperature, a thinking level or budget); one batch job per call,
its input an uploaded JSONL file whose lines carry each problem's id as `key`. File input,
never inlined requests: the file's result lines carry the key back, while inlined responses
have come back without the metadata that would name their problem, and out of order (public
reports on python-genai). Results are matched by key only; a batch whose results cannot be
matched (no key known, keys never submitted) is an error before any row is written, and a
request without a result writes no row: it stays unanswered for the next run. The downloaded
results are kept beside the job state (nothing paid for is lost).

Batch jobs and file upload exist only under the API's `v1beta` (google-genai 3.x defaults to
`v1`, where they answer 404), so the client asks for `v1beta` unless params name another
version. The model is checked (`models.get`) before anything is submitted. Each row records
the model version that answered, its finish reason and its token usage (thought tokens
included: they are billed); `MAX_TOKENS` answers are cut ones (`lib.data.cut_short`).

The job is remembered in `RunPaths.teacher_state` (display name, job name, submitted ids,
model, times; never the key) *before* it is created: a re-run after a crash, a kernel restart
or an error while creating picks the same job up (found by its display name when its name
never came back) instead of paying for a new one, and the caller passes only problems not
answered yet. The SDK's own retry is off for job creation: Google may create the job and still
answer 5xx, and a blind retry would create (and bill) a second one.

The API key comes from `GEMINI_API_KEY` or `GOOGLE_API_KEY`, else from a `.env` file in the
repository root; it is handed to the SDK and nowhere else (no file, no message, no row).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Iterator

from .. import io, paths
from ..paths import RunPaths
from ..styles import system_prompt

ENV_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")  # looked up in this order
SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED_STATES = ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")
TRANSIENT_CODES = (408, 429, 500, 502, 503, 504)
BACKOFF = 1.5  # poll interval multiplier, up to data.gemini.poll_max_interval_s
API_VERSION = "v1beta"  # Google documents batches and files under v1beta only

# (problem id, text or None, error or None, fields for the row: the model asked for and the
# model version the service answered with)
Result = tuple[str, "str | None", "str | None", dict]


class GeminiJobError(RuntimeError):
    """The batch job ended without results (failed, cancelled, expired) or returned none."""


class GeminiModelError(ValueError):
    """data.gemini.model names a model the service does not have (retired or misspelt)."""


class GeminiPollTimeout(TimeoutError):
    """The job is still running after data.gemini.poll_timeout_s; re-running resumes it."""


# ---------------------------------------------------------------------------------------
# The key
# ---------------------------------------------------------------------------------------


def _read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments, blank lines, `export ` prefixes and quotes allowed."""
    out: dict[str, str] = {}
    with io.named_decode_errors(path):  # a stray byte names the file and line, never the key
        text = Path(path).read_text(encoding="utf-8")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        name = name.strip()
        if name.startswith("export "):
            name = name[len("export ") :].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[name] = value
    return out


def api_key(env_file: Path | str | None = None) -> str:
    """The Gemini API key: from the environment, else from `.env` in the repository root."""
    for name in ENV_VARS:
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    env_file = Path(env_file) if env_file is not None else paths.REPO / ".env"
    if env_file.is_file():
        values = _read_env_file(env_file)
        for name in ENV_VARS:
            if values.get(name, "").strip():
                return values[name].strip()
    raise RuntimeError(
        f"no Gemini API key: set {' or '.join(ENV_VARS)} in the environment, or put "
        f"`GEMINI_API_KEY=...` in a .env file in the repository root (it is git-ignored). "
        f"Keys are never taken from parameters: papermill writes those into the notebook. "
        f"Without a key, use data.teacher=local or data.teacher=reference."
    )


# ---------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------


def make_client(cfg, key: str | None = None):
    """A google-genai client; the SDK itself retries 408/429/5xx answers with backoff."""
    from google import genai
    from google.genai import types

    g = cfg["data"]["gemini"]
    delay = float(g["retry_initial_delay_s"])
    options = {
        "retry_options": types.HttpRetryOptions(
            attempts=g["retry_attempts"],
            initial_delay=delay,
            max_delay=max(delay, float(g["poll_max_interval_s"])),
            jitter=delay,
            http_status_codes=list(TRANSIENT_CODES),
        )
    }
    if g["base_url"]:
        options["base_url"] = g["base_url"]
    options["api_version"] = g["api_version"] or API_VERSION
    return genai.Client(api_key=key or api_key(), vertexai=False, http_options=types.HttpOptions(**options))


def check_model(client, cfg) -> dict:
    """The model of params as the service describes it (`models.get`), before anything is
    paid for; a model it does not know (retired, misspelt) stops the run with what to set."""
    from google.genai import errors

    g = cfg["data"]["gemini"]
    try:
        model = client.models.get(model=g["model"])
    except errors.ClientError as exc:
        if exc.code != 404:
            raise
        raise GeminiModelError(
            f"data.gemini.model = {g['model']!r}: the Gemini API ({g['api_version'] or API_VERSION}) has no such "
            f"model ({exc.code} {exc.status}: {exc.message}). Models are retired on the dates of Google's "
            f"Gemini API deprecations page; set data.gemini.model to a current one, in params/base.yaml or "
            f"per run (python -m lib run ... --set data.gemini.model=<model>)."
        ) from None
    return {"name": model.name, "version": model.version, "display_name": model.display_name}


def _transient(exc: BaseException) -> bool:
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        return exc.code in TRANSIENT_CODES
    try:
        import httpx

        return isinstance(exc, httpx.TransportError)
    except ImportError:  # pragma: no cover
        return False


def _state_name(job) -> str:
    state = getattr(job, "state", None)
    return str(getattr(state, "value", state) or "JOB_STATE_UNSPECIFIED")


# ---------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------


def generation_config(cfg) -> dict:
    """The request's `generationConfig` (REST JSON): temperature, the output cap, and thinking
    as params set it (a level for Gemini 3, a token budget for 2.5; none sent = the model's
    default, which for Gemini 3 is thinking on)."""
    g = cfg["data"]["gemini"]
    out = {"temperature": g["temperature"], "maxOutputTokens": g["max_output_tokens"]}
    level, budget = g["thinking_level"], g["thinking_budget"]
    if level and budget is not None:
        raise ValueError(
            f"data.gemini.thinking_level = {level!r} and data.gemini.thinking_budget = {budget}: set one "
            "(the API refuses both; a level for Gemini 3 models, a budget for Gemini 2.5)"
        )
    if level:
        out["thinkingConfig"] = {"thinkingLevel": level.upper()}
    elif budget is not None:
        out["thinkingConfig"] = {"thinkingBudget": int(budget)}
    return out


def request_body(problem: dict, style: str, cfg) -> dict:
    """One GenerateContentRequest (REST JSON) for a problem: the style's system instruction,
    the question as the user turn, and the generation settings from params."""
    return {
        "contents": [{"role": "user", "parts": [{"text": problem["question"]}]}],
        "systemInstruction": {"parts": [{"text": system_prompt(style)}]},
        "generationConfig": generation_config(cfg),
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def load_state(rp: RunPaths) -> dict | None:
    return io.read_json(rp.teacher_state) if rp.teacher_state.exists() else None


def _save_state(rp: RunPaths, state: dict) -> None:
    io.write_json(rp.teacher_state, state)


def upload(client, cfg, payload: bytes, display: str) -> str:
    """The requests as a JSONL file on the Files API; its name. The service has refused some
    MIME types for JSONL with a 200 whose body is an error (the SDK then raises KeyError)."""
    from google.genai import types

    mime = cfg["data"]["gemini"]["upload_mime_type"]
    try:
        uploaded = client.files.upload(
            file=BytesIO(payload), config=types.UploadFileConfig(display_name=display, mime_type=mime)
        )
    except KeyError as exc:
        raise GeminiJobError(
            f"the Files API did not accept the batch input ({len(payload)} bytes) with "
            f"data.gemini.upload_mime_type = {mime!r} (the SDK found no file in the answer: {exc}); "
            "nothing was submitted. Set another MIME type (application/jsonl, application/json and "
            "text/plain have each been reported to work) with --set data.gemini.upload_mime_type=..."
        ) from None
    return uploaded.name


def find_job(client, display: str, pages: int = 20):
    """The batch job of this display name, if the service has one (newest pages first)."""
    from google.genai import types

    seen = 0
    for job in client.batches.list(config=types.ListBatchJobsConfig(page_size=50)):
        if job.display_name == display:
            return job
        seen += 1
        if seen >= 50 * pages:
            break
    return None


def create_job(client, cfg, rp: RunPaths, state: dict):
    """Create the job of `state` once: the SDK's retry is off here (a 5xx may come after the job
    was created), and after any error the job is looked up by its display name before another
    try."""
    from google.genai import types

    g = cfg["data"]["gemini"]
    no_retry = types.HttpOptions(retry_options=types.HttpRetryOptions(attempts=1))
    config = types.CreateBatchJobConfig(display_name=state["display_name"], http_options=no_retry)
    delay = float(g["retry_initial_delay_s"])
    for attempt in range(1, max(1, g["retry_attempts"]) + 1):
        try:
            return client.batches.create(model=g["model"], src=state["input_file"], config=config)
        except Exception as exc:
            if not _transient(exc):
                raise
            state.setdefault("create_errors", []).append(f"{_now()} {getattr(exc, 'code', type(exc).__name__)}")
            _save_state(rp, state)
            time.sleep(delay)
            delay = min(delay * 2, float(g["poll_max_interval_s"]))
            found = find_job(client, state["display_name"])
            if found is not None:
                return found
            if attempt >= g["retry_attempts"]:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def submit(client, cfg, rp: RunPaths, problems: list[dict], style: str, previous: dict | None = None) -> dict:
    """Create one batch job for `problems`, its display name remembered before it exists."""
    g = cfg["data"]["gemini"]
    ids = [p["id"] for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError("problem ids must be unique: results are matched back by id")
    model_info = check_model(client, cfg)
    payload = "".join(
        json.dumps({"key": p["id"], "request": request_body(p, style, cfg)}, ensure_ascii=False) + "\n"
        for p in problems
    ).encode("utf-8")
    display = f"workbook-{rp.profile}-{rp.name}-{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%S%fZ}"
    history = list((previous or {}).get("history", []))
    if previous and (previous.get("job_name") or previous.get("display_name")):
        history.append(
            {k: previous.get(k) for k in ("job_name", "display_name", "created", "state", "collected", "n_submitted")}
        )
    state = {
        "job_name": None,
        "display_name": display,
        "model": g["model"],
        "model_info": model_info,
        "style": style,
        "source": "file",
        "input_file": upload(client, cfg, payload, display),
        "payload_bytes": len(payload),
        "submitted_ids": ids,
        "n_submitted": len(ids),
        "created": None,
        "state": "CREATING",
        "updated": _now(),
        "collected": False,
        "history": history,
    }
    _save_state(rp, state)  # before the job exists: a crash from here on finds it by display name
    return _created(rp, state, create_job(client, cfg, rp, state))


def _created(rp: RunPaths, state: dict, job) -> dict:
    state.update(job_name=job.name, created=_now(), state=_state_name(job), updated=_now())
    _save_state(rp, state)
    return state


def recover(client, cfg, rp: RunPaths, state: dict) -> dict | None:
    """A state saved while its job was being created: the job if the service has it (found by
    display name), else None (nothing was created; the problems are submitted again)."""
    found = find_job(client, state["display_name"])
    return _created(rp, state, found) if found is not None else None


# ---------------------------------------------------------------------------------------
# Polling
# ---------------------------------------------------------------------------------------


def failure_reason(client, job) -> str:
    """Why a batch job failed: the operation's `error`. google-genai 3.6 does not map it into
    `BatchJob.error` for the Gemini API (only for Vertex), so the job's REST answer is read
    through the SDK's own request path when the mapped field is empty."""
    if getattr(job, "error", None):
        return _error_text(job.error)
    try:
        raw = json.loads(client._api_client.request("get", job.name, {}).body or "{}")
    except Exception as exc:  # the reason is a courtesy: never hide the failure behind it
        return f"its reason could not be read ({type(exc).__name__})"
    return _error_text(raw["error"]) if raw.get("error") else "the service gave no reason"


def wait(client, cfg, rp: RunPaths, state: dict, progress: bool = True):
    """Poll the job with backoff until it ends; transient errors are retried here too."""
    from tqdm.auto import tqdm

    g = cfg["data"]["gemini"]
    name = state["job_name"]
    interval = float(g["poll_interval_s"])
    timeout = float(g["poll_timeout_s"])
    t0 = time.monotonic()
    transient_errors = 0
    with tqdm(desc=f"gemini {name}", unit="poll", disable=not progress) as bar:
        while True:
            job = None
            try:
                job = client.batches.get(name=name)
            except Exception as exc:
                if not _transient(exc):
                    raise
                transient_errors += 1
                bar.set_postfix_str(f"transient error {getattr(exc, 'code', type(exc).__name__)}, retrying")
            if job is not None:
                now_state = _state_name(job)
                bar.set_postfix_str(now_state)
                if now_state != state.get("state"):
                    state.update(state=now_state, updated=_now())
                    _save_state(rp, state)
                if now_state == SUCCEEDED:
                    return job
                if now_state in FAILED_STATES:
                    reason = failure_reason(client, job)
                    state.update(failed=True, failure=reason, updated=_now())
                    _save_state(rp, state)
                    raise GeminiJobError(
                        f"Gemini batch job {name} ended in {now_state} ({reason}): no solutions came back for "
                        f"its {state['n_submitted']} problem(s). Nothing was written; re-running submits a new job."
                    )
            bar.update(1)
            elapsed = time.monotonic() - t0
            if timeout > 0 and elapsed + interval > timeout:
                raise GeminiPollTimeout(
                    f"Gemini batch job {name} is still {state.get('state')} after {elapsed:.1f} s "
                    f"(data.gemini.poll_timeout_s={timeout:g}); it keeps running on Google's side. "
                    f"Its name is saved in {rp.teacher_state.name}: re-run to pick up the same job "
                    f"(no new job will be submitted)."
                    + (f" {transient_errors} transient error(s) while polling." if transient_errors else "")
                )
            time.sleep(interval)
            interval = min(interval * BACKOFF, float(g["poll_max_interval_s"]))


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


USAGE = {  # usageMetadata field -> the row's name; thought tokens are billed as output
    "promptTokenCount": "prompt_tokens",
    "candidatesTokenCount": "output_tokens",
    "thoughtsTokenCount": "thought_tokens",
    "totalTokenCount": "total_tokens",
}
TRUNCATED = "MAX_TOKENS"


@dataclass
class Answer:
    """One result of a batch: its key (None when none can be read), the text or why there is
    none, and what the row records of it (model version, finish reason, token usage)."""

    key: str | None
    text: str | None = None
    error: str | None = None
    meta: dict = field(default_factory=dict)


def response_text(response: dict | None) -> tuple[str | None, str | None]:
    """(text, None) from a GenerateContentResponse (REST JSON), or (None, reason). Thought parts
    are not the answer; an answer that did not finish (`MAX_TOKENS`, `SAFETY`, ...) is cut or
    withheld, so it is a reason too."""
    if not isinstance(response, dict):
        return None, "no response object"
    candidates = response.get("candidates") or []
    if not candidates:
        block = (response.get("promptFeedback") or {}).get("blockReason")
        return None, f"no candidates (prompt blocked: {block})" if block else "no candidates in the response"
    candidate = candidates[0] if isinstance(candidates[0], dict) else {}
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(
        p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    )
    finish = candidate.get("finishReason")
    if finish == TRUNCATED:
        return None, (
            f"finish reason {TRUNCATED}: the answer {'was cut' if text.strip() else 'never began'} at "
            "data.gemini.max_output_tokens (thought tokens count against it)"
        )
    if finish not in (None, "STOP"):
        return None, f"finish reason {finish}" + (": the text is not an answer" if text.strip() else "")
    if not text.strip():
        return None, f"empty response (finish reason {finish})"
    return text, None


def response_meta(response: dict | None) -> dict:
    """What a row records of a response: the model version that wrote it, why it finished, and
    its token usage."""
    if not isinstance(response, dict):
        return {}
    candidates = response.get("candidates") or [{}]
    usage = response.get("usageMetadata") or {}
    return {
        "model_version": response.get("modelVersion"),
        "finish_reason": candidates[0].get("finishReason") if isinstance(candidates[0], dict) else None,
        "usage": {ours: int(usage.get(theirs) or 0) for theirs, ours in USAGE.items()} if usage else None,
    }


def _error_text(error) -> str:
    if isinstance(error, dict):
        code, message, status = error.get("code"), error.get("message"), error.get("status")
    else:
        code, message, status = getattr(error, "code", None), getattr(error, "message", None), None
    return "gemini error " + " ".join(str(x) for x in (code, status) if x not in (None, "")) + f": {message or error}"


_KEY = re.compile(r'"key"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _answer(key: str, obj: dict, lineno) -> Answer:
    if obj.get("error"):
        return Answer(key, error=_error_text(obj["error"]))
    if "response" in obj:
        text, reason = response_text(obj["response"])
        return Answer(key, text, reason, response_meta(obj["response"]))
    return Answer(key, error=f"malformed result {lineno}: neither 'response' nor 'error'")


def parse_result_lines(data: bytes | str) -> Iterator[Answer]:
    """An answer per line of a batch results file; a line that cannot be used becomes an error
    answer, its key recovered from the raw text where possible."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    for lineno, obj, error, raw in io.parse_lines(text.splitlines()):
        found = _KEY.search(raw)
        recovered = found.group(1) if found else None
        if error:
            yield Answer(recovered, error=f"malformed result line {lineno}: {error}")
        elif not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
            yield Answer(recovered, error=f"malformed result line {lineno}: no string 'key'")
        else:
            yield _answer(obj["key"], obj, f"line {lineno}")


def _inlined_results(job) -> Iterator[Answer]:
    """A job created inline by an older workbook: matched by metadata key only, never by order."""
    for i, item in enumerate(job.dest.inlined_responses, 1):
        key = (item.metadata or {}).get("key") or None
        obj = {"error": item.error} if item.error is not None else {}
        if item.error is None:
            obj["response"] = (
                item.response.model_dump(mode="json", by_alias=True, exclude_none=True) if item.response else None
            )
        yield _answer(key, obj, f"inlined response {i}")


def download(client, cfg, file_name: str) -> bytes:
    """The responses file; transient errors retried here (the SDK does not retry downloads)."""
    g = cfg["data"]["gemini"]
    delay = float(g["retry_initial_delay_s"])
    for attempt in range(1, max(1, g["retry_attempts"]) + 1):
        try:
            return client.files.download(file=file_name)
        except Exception as exc:
            if not _transient(exc) or attempt >= g["retry_attempts"]:
                raise
            time.sleep(delay)
            delay = min(delay * 2, float(g["poll_max_interval_s"]))
    raise AssertionError("unreachable")  # pragma: no cover


def results(client, cfg, job, keep: Path) -> list[Answer]:
    """Every answer of a finished job; a responses file is kept at `keep` first (what was paid
    for stays on disk whatever happens next)."""
    dest = getattr(job, "dest", None)
    if dest is not None and dest.inlined_responses is not None:
        return list(_inlined_results(job))
    if dest is not None and dest.file_name:
        data = download(client, cfg, dest.file_name)
        io.write_text(keep, data.decode("utf-8", errors="replace"))
        return list(parse_result_lines(data))
    raise GeminiJobError(
        f"Gemini batch job {job.name} succeeded but names no results (neither inlined responses nor a responses file)"
    )


def collect(
    client, cfg, rp: RunPaths, state: dict, pending: dict[str, dict], progress: bool = True
) -> Iterator[Result]:
    """Wait for the job of `state`, then yield a result for every submitted id still in
    `pending` that has one (removing it there). Ids without a result write nothing and stay
    unanswered; results that cannot be matched stop here, before any row."""
    job = wait(client, cfg, rp, state, progress)
    name = state["job_name"]
    keep = rp.teacher_results(name)
    answers = results(client, cfg, job, keep)
    submitted = set(state["submitted_ids"])
    stray = sorted({a.key for a in answers if a.key is not None and a.key not in submitted})
    unkeyed = [a.error for a in answers if a.key is None]
    matched: dict[str, Answer] = {}
    for a in answers:
        if a.key in submitted:
            matched.setdefault(a.key, a)  # a repeated line: the first one counts
    if stray or (submitted and not matched):
        state.update(unmatched=True, updated=_now())
        _save_state(rp, state)
        raise GeminiJobError(
            f"Gemini batch job {name}: its {len(answers)} result(s) cannot be matched to the {len(submitted)} "
            f"problem(s) submitted ("
            + (f"{len(stray)} key(s) never submitted, first {stray[0]!r}; " if stray else "")
            + f"{len(unkeyed)} without a key, {len(matched)} matched). Nothing was written"
            + (f"; the results are kept in {keep}" if keep.exists() else "")
            + ". Re-running submits a new job."
        )
    asked = state.get("model")
    for key in state["submitted_ids"]:
        if key in matched and key in pending:
            pending.pop(key)
            a = matched[key]
            meta = {"teacher_model": asked, "model_version": None, **a.meta}
            yield key, a.text, (None if a.text is not None else f"{a.error} (job {name})"), meta
    missing = [k for k in state["submitted_ids"] if k not in matched]
    if unkeyed or missing:
        warnings.warn(
            f"Gemini batch job {name}: {len(missing)} request(s) without a result, {len(unkeyed)} result line(s) "
            f"without a readable key (first: {unkeyed[0] if unkeyed else '-'}); those problems stay unanswered "
            "and the next run asks for them again.",
            stacklevel=2,
        )
    state.update(collected=True, collected_at=_now(), n_results=len(matched), missing_ids=missing, updated=_now())
    _save_state(rp, state)


def generate(cfg, rp: RunPaths, problems: list[dict], style: str, progress: bool = True) -> Iterator[Result]:
    """Solutions for `problems` (none of them answered yet), as `(id, text, error, fields)`.

    An unfinished job in the state file is picked up first (no new submission, no new cost),
    one whose creation was cut short is looked up by its display name; only problems it does
    not cover go into a new job (those it covered without a result wait for the next run)."""
    if not problems:
        return
    client = make_client(cfg)
    pending = {p["id"]: p for p in problems}
    state = load_state(rp)
    open_job = state and not state.get("collected") and not state.get("failed") and not state.get("unmatched")
    if open_job and state.get("style") not in (None, style):
        raise ValueError(f"{rp.teacher_state.name} holds a job for style {state.get('style')!r}, not {style!r}")
    if open_job and not state.get("job_name") and state.get("display_name"):
        state = recover(client, cfg, rp, state) or {**state, "failed": True, "failure": "never created"}
    if open_job and state.get("job_name") and not state.get("failed"):
        covered = set(state["submitted_ids"])
        yield from collect(client, cfg, rp, state, pending, progress)
        for key in covered:
            pending.pop(key, None)
    if pending:
        state = submit(client, cfg, rp, list(pending.values()), style, previous=state)
        yield from collect(client, cfg, rp, state, pending, progress)
