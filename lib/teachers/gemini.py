"""The `gemini` teacher: the google-genai Batch API, as the study used it.

One request per problem, carrying the style's system instruction; one batch job per call
(inlined requests, or an uploaded JSONL file when the payload is above
`data.gemini.inline_limit_bytes`); polled with backoff behind a progress bar; results matched
back to problems by key. Batch jobs and file upload exist only under the API's `v1beta`
(google-genai 3.x defaults to `v1`, where they answer 404), so the client asks for `v1beta`
unless params name another version. The model is checked (`models.get`) before anything
is submitted, and each row records the model version the service answered with.

The job is remembered in `RunPaths.teacher_state` (job name, submitted ids, model, times —
never the key): a re-run after a crash or a kernel restart picks the same job up instead of
paying for a new one, and the caller passes only problems not answered yet. Per-row errors
and malformed result lines come back as `(id, None, reason)` so the caller records them as
rejected rows.

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


def request_body(problem: dict, style: str, cfg) -> dict:
    """One GenerateContentRequest (REST JSON) for a problem: the style's system instruction,
    the question as the user turn, and the generation settings from params."""
    g = cfg["data"]["gemini"]
    return {
        "contents": [{"role": "user", "parts": [{"text": problem["question"]}]}],
        "systemInstruction": {"parts": [{"text": system_prompt(style)}]},
        "generationConfig": {"temperature": g["temperature"], "maxOutputTokens": g["max_output_tokens"]},
    }


def _inlined(problem: dict, style: str, cfg):
    from google.genai import types

    g = cfg["data"]["gemini"]
    return types.InlinedRequest(
        contents=[types.Content(role="user", parts=[types.Part(text=problem["question"])])],
        config=types.GenerateContentConfig(
            system_instruction=system_prompt(style),
            temperature=g["temperature"],
            max_output_tokens=g["max_output_tokens"],
        ),
        metadata={"key": problem["id"]},
    )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def load_state(rp: RunPaths) -> dict | None:
    return io.read_json(rp.teacher_state) if rp.teacher_state.exists() else None


def _save_state(rp: RunPaths, state: dict) -> None:
    io.write_json(rp.teacher_state, state)


def submit(client, cfg, rp: RunPaths, problems: list[dict], style: str, previous: dict | None = None) -> dict:
    """Create one batch job for `problems` and remember it before anything else happens."""
    from google.genai import types

    g = cfg["data"]["gemini"]
    ids = [p["id"] for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError("problem ids must be unique: results are matched back by id")
    model_info = check_model(client, cfg)
    payload = "".join(
        json.dumps({"key": p["id"], "request": request_body(p, style, cfg)}, ensure_ascii=False) + "\n"
        for p in problems
    ).encode("utf-8")
    display = f"workbook-{rp.profile}-{rp.name}-{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%SZ}"
    input_file = None
    if len(payload) > g["inline_limit_bytes"]:
        uploaded = client.files.upload(
            file=BytesIO(payload),
            config=types.UploadFileConfig(display_name=display, mime_type="jsonl"),
        )
        input_file = uploaded.name
        src = input_file
    else:
        src = [_inlined(p, style, cfg) for p in problems]
    job = client.batches.create(model=g["model"], src=src, config=types.CreateBatchJobConfig(display_name=display))
    history = list((previous or {}).get("history", []))
    if previous and previous.get("job_name"):
        history.append({k: previous.get(k) for k in ("job_name", "created", "state", "collected", "n_submitted")})
    state = {
        "job_name": job.name,
        "display_name": display,
        "model": g["model"],
        "model_info": model_info,
        "style": style,
        "source": "file" if input_file else "inlined",
        "input_file": input_file,
        "payload_bytes": len(payload),
        "submitted_ids": ids,
        "n_submitted": len(ids),
        "created": _now(),
        "state": _state_name(job),
        "updated": _now(),
        "collected": False,
        "history": history,
    }
    _save_state(rp, state)
    return state


# ---------------------------------------------------------------------------------------
# Polling
# ---------------------------------------------------------------------------------------


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
                    state.update(failed=True, updated=_now())
                    _save_state(rp, state)
                    raise GeminiJobError(
                        f"Gemini batch job {name} ended in {now_state}: no solutions came back for its "
                        f"{state['n_submitted']} problem(s). Nothing was written; re-running submits a new job."
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


def response_text(response: dict | None) -> tuple[str | None, str | None]:
    """(text, None) from a GenerateContentResponse (REST JSON), or (None, reason)."""
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
    if not text.strip():
        return None, f"empty response (finish reason {candidate.get('finishReason')})"
    return text, None


def response_model_version(response: dict | None) -> str | None:
    """The model version that wrote a GenerateContentResponse (REST JSON `modelVersion`)."""
    return response.get("modelVersion") if isinstance(response, dict) else None


def _error_text(error) -> str:
    if isinstance(error, dict):
        code, message, status = error.get("code"), error.get("message"), error.get("status")
    else:
        code, message, status = getattr(error, "code", None), getattr(error, "message", None), None
    return "gemini error " + " ".join(str(x) for x in (code, status) if x not in (None, "")) + f": {message or error}"


_KEY = re.compile(r'"key"\s*:\s*"((?:[^"\\]|\\.)*)"')


def parse_result_lines(
    data: bytes | str,
) -> Iterator[tuple[str | None, str | None, str | None, str | None, str | None]]:
    """(key, text, error, malformed, model version) per line of a batch results file;
    `malformed` is the reason a line could not be used (its key recovered from the raw text
    where possible)."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    for lineno, obj, error, raw in io.parse_lines(text.splitlines()):
        if error:
            found = _KEY.search(raw)
            yield (found.group(1) if found else None), None, None, f"malformed result line {lineno}: {error}", None
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
            found = _KEY.search(raw)
            yield (
                (found.group(1) if found else None),
                None,
                None,
                f"malformed result line {lineno}: no string 'key'",
                None,
            )
            continue
        if obj.get("error"):
            yield obj["key"], None, _error_text(obj["error"]), None, None
        elif "response" in obj:
            body, reason = response_text(obj["response"])
            yield obj["key"], body, reason, None, response_model_version(obj["response"])
        else:
            yield obj["key"], None, None, f"malformed result line {lineno}: neither 'response' nor 'error'", None


def _inlined_results(job) -> Iterator[tuple[str | None, str | None, str | None, str | None, str | None]]:
    for i, item in enumerate(job.dest.inlined_responses, 1):
        key = (item.metadata or {}).get("key")
        if not key:
            yield None, None, None, f"inlined response {i} has no metadata key", None
        elif item.error is not None:
            yield key, None, _error_text(item.error), None, None
        else:
            dumped = item.response.model_dump(mode="json", by_alias=True, exclude_none=True) if item.response else None
            body, reason = response_text(dumped)
            yield key, body, reason, None, response_model_version(dumped)


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


def results(client, cfg, job) -> Iterator[tuple[str | None, str | None, str | None, str | None, str | None]]:
    dest = getattr(job, "dest", None)
    if dest is not None and dest.inlined_responses is not None:
        yield from _inlined_results(job)
    elif dest is not None and dest.file_name:
        yield from parse_result_lines(download(client, cfg, dest.file_name))
    else:
        raise GeminiJobError(
            f"Gemini batch job {job.name} succeeded but names no results "
            "(neither inlined responses nor a responses file)"
        )


def collect(
    client, cfg, rp: RunPaths, state: dict, pending: dict[str, dict], progress: bool = True
) -> Iterator[Result]:
    """Wait for the job of `state`, then yield a result for every submitted id still in
    `pending` (removing it there): its text, or the reason it has none."""
    job = wait(client, cfg, rp, state, progress)
    name = state["job_name"]
    submitted = set(state["submitted_ids"])
    seen: set[str] = set()
    unmatched: list[str] = []  # malformed lines whose key could not be recovered
    stray = 0
    asked = state.get("model")
    for key, text, error, malformed, version in results(client, cfg, job):
        if key is None:
            unmatched.append(malformed or "a result without a key")
            continue
        if key not in submitted:
            stray += 1
            continue
        if key in seen:
            continue  # a duplicate line: the first one counts
        seen.add(key)
        if key in pending:
            pending.pop(key)
            meta = {"teacher_model": asked, "model_version": version}
            if malformed:
                yield key, None, f"{malformed} (job {name})", meta
            elif error:
                yield key, None, error, meta
            else:
                yield key, text, None, meta
    missing = [k for k in state["submitted_ids"] if k not in seen]
    note = ""
    if unmatched:
        note = f"; {len(unmatched)} result(s) could not be matched to a key, first: {unmatched[0]}"
    for key in missing:
        if key in pending:
            pending.pop(key)
            yield (
                key,
                None,
                f"no result for this request in the output of job {name}{note}",
                {"teacher_model": asked, "model_version": None},
            )
    if unmatched or stray or missing:
        warnings.warn(
            f"Gemini batch job {name}: {len(unmatched)} unusable result line(s), {len(missing)} request(s) "
            f"without a result, {stray} result(s) for keys never submitted; recorded as rejected rows.",
            stacklevel=2,
        )
    state.update(collected=True, collected_at=_now(), n_results=len(seen), updated=_now())
    _save_state(rp, state)


def generate(cfg, rp: RunPaths, problems: list[dict], style: str, progress: bool = True) -> Iterator[Result]:
    """Solutions for `problems` (none of them answered yet), as `(id, text, error)`.

    An unfinished job in the state file is picked up first (no new submission, no new
    cost); only problems it does not cover go into a new job."""
    if not problems:
        return
    client = make_client(cfg)
    pending = {p["id"]: p for p in problems}
    state = load_state(rp)
    if state and state.get("job_name") and not state.get("collected") and not state.get("failed"):
        if state.get("style") not in (None, style):
            raise ValueError(f"{rp.teacher_state.name} holds a job for style {state.get('style')!r}, not {style!r}")
        yield from collect(client, cfg, rp, state, pending, progress)
    if pending:
        state = submit(client, cfg, rp, list(pending.values()), style, previous=state)
        yield from collect(client, cfg, rp, state, pending, progress)
