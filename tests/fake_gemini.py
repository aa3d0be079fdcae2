"""A fake of the Gemini API's batch endpoints, for running the real google-genai SDK offline.

Only what the SDK (google-genai 3.6) really calls for a batch run, read from its source
(`batches.py`, `files.py`, `_api_client.py`):

- `POST /{version}/models/{model}:batchGenerateContent` (batches.create): body
  `{"batch": {"displayName", "inputConfig": {"requests": {"requests": [{"request", "metadata"}]}}
  | {"fileName": "files/..."}}}`; answers a long-running operation `{"name": "batches/...",
  "metadata": {"state": "BATCH_STATE_PENDING", ...}}` (the SDK reads `name` and `metadata`).
- `GET /{version}/batches/{id}` (batches.get): the same shape; once done, `metadata.output`
  is `{"inlinedResponses": {"inlinedResponses": [...]}}` for inlined input or
  `{"responsesFile": "files/..."}` for file input.
- `POST /upload/{version}/files` with `X-Goog-Upload-Protocol: resumable`,
  `X-Goog-Upload-Command: start` (files.upload, step 1): answers the upload URL in the
  `x-goog-upload-url` header; then `POST` of the bytes to that URL with
  `X-Goog-Upload-Command: upload[, finalize]` and `X-Goog-Upload-Offset` (step 2): answers
  `x-goog-upload-status: active|final` and, when final, `{"file": {...}}`.
- `GET /{version}/files/{id}:download?alt=media` (files.download): the raw bytes.
- `GET /{version}/models/{model}` (models.get): the model's description.

- `GET /{version}/batches?pageSize=&pageToken=` (batches.list): `{"operations": [...],
  "nextPageToken"}`, newest first.

As strict as the service: batches and files exist only under `v1beta` (Google documents
them there only; any other version answers 404), a model the service does not know answers
404 `NOT_FOUND` in the service's error shape (from models.get and batch creation), and every
response carries the `modelVersion` that wrote it, its `finishReason` and `usageMetadata`
(thought tokens included). Where public reports say the service misbehaves, modes do too:
`shuffle` returns results out of order, `drop_metadata` returns inlined responses without the
metadata that named their request, an upload whose MIME type the Files API does not accept
ends `final` with 200 and an error body (the SDK then raises KeyError), the fault kind
`create_after` creates the job and then answers the fault (a retry would create a second
one), and an outcome `{"max_tokens": True}` spends the output budget on thoughts alone
(`MAX_TOKENS`, no text). A request whose thinking settings the API refuses (a level and a
budget together, an unknown level) gets a 400 as its result.

The server binds 127.0.0.1 on an ephemeral port, serves from a daemon thread, caps body
sizes, request counts and socket timeouts, and records every call (method, path, status) so
tests can assert what the SDK really did. It checks the `x-goog-api-key` header when given a
key (upload-chunk requests carry no key: the upload URL is the credential, as with Google's).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Callable
from urllib.parse import parse_qs, urlparse

from loopback import LoopbackServer

MAX_BODY = 8 * 2**20  # bytes per request
MAX_REQUESTS = 2000  # per server: a runaway client loop ends in 503s, not a hung test

# responder(key, request) -> one of
#   {"text": "..."}                          a normal answer
#   {"error": {"code", "message", "status"}} a per-row error
#   {"response": {...}}                      a raw GenerateContentResponse (e.g. blocked)
#   {"raw": "..."}                           the literal result line (file output only)
#   {"max_tokens": True}                     thinking spent maxOutputTokens: thoughts, no text
Responder = Callable[[str, dict], dict]

# MIME types the Files API took for JSONL in public reports; `jsonl` itself has been refused.
ACCEPTED_MIME = ("application/jsonl", "application/json", "text/plain")
THINKING_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")


BATCH_VERSION = "v1beta"  # the only API version with batches and files
# model id -> the version the service reports (models.get `version`, responses' `modelVersion`)
MODELS = {"gemini-3.8-flash": "gemini-3.8-flash-0902", "gemini-3.5-flash-lite": "gemini-3.5-flash-lite-0721"}


def text_response(text: str, model_version: str = "gemini-3.8-flash-0902") -> dict:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {
            "promptTokenCount": 50,
            "candidatesTokenCount": 40,
            "thoughtsTokenCount": 30,
            "totalTokenCount": 120,
        },
        "modelVersion": model_version,
    }


def max_tokens_response(request: dict, model_version: str = "gemini-3.8-flash-0902") -> dict:
    """Thinking spent the whole output budget: a thought part, no answer, `MAX_TOKENS`."""
    budget = int((request.get("generationConfig") or {}).get("maxOutputTokens") or 8192)
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "Let me think about this...", "thought": True}]},
                "finishReason": "MAX_TOKENS",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 50, "thoughtsTokenCount": budget, "totalTokenCount": 50 + budget},
        "modelVersion": model_version,
    }


def request_problem(request: dict) -> str | None:
    """Why the API would refuse a GenerateContentRequest's generation settings (None: it takes them)."""
    thinking = (request.get("generationConfig") or {}).get("thinkingConfig") or {}
    if "thinkingLevel" in thinking and "thinkingBudget" in thinking:
        return "You cannot use both thinking_level and the legacy thinking_budget parameter."
    level = thinking.get("thinkingLevel")
    if level is not None and level not in THINKING_LEVELS:
        return f"Invalid value at 'generation_config.thinking_config.thinking_level' ({level!r})"
    return None


def model_not_found(model: str, version: str, method: str) -> dict:
    """The service's answer for a model it does not have (retired or misspelt)."""
    return _error(
        404,
        f"models/{model} is not found for API version {version}, or is not supported for "
        f"{method}. Call ListModels to see the list of available models and their supported "
        "methods.",
        "NOT_FOUND",
    )


@dataclass
class Job:
    name: str
    model: str
    display_name: str
    source: str  # "inlined" | "file"
    keys: list[str]
    requests: list[dict]
    outcomes: list[dict]
    model_version: str = ""
    gets: int = 0
    state: str = "BATCH_STATE_PENDING"
    output_file: str | None = None


@dataclass
class FakeGemini(LoopbackServer):
    responder: Responder
    api_key: str | None = None
    polls_before_done: int = 1  # GETs answered RUNNING before the job ends
    final_state: str = "BATCH_STATE_SUCCEEDED"
    hold: bool = False  # keep every job RUNNING until release()
    # kind -> HTTP statuses to answer (one per call) before serving normally;
    # kinds: create, create_after (the job is created, then the fault answered), get, upload_start, download
    faults: dict[str, list[int]] = field(default_factory=dict)
    extra_result_lines: list[str] = field(default_factory=list)  # appended to results files
    models: dict[str, str] = field(default_factory=lambda: dict(MODELS))  # what the service serves
    shuffle: bool = False  # results out of request order (inlined and file)
    drop_metadata: bool = False  # inlined responses without the metadata that keyed them
    page_size: int = 2  # batches.list page size when the client names none (small: paging is exercised)

    def __post_init__(self):
        self.calls: list[dict] = []
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, bytes] = {}  # "files/<id>" -> bytes (uploads and results)
        self.uploads: dict[str, dict] = {}  # upload id -> {"data": bytearray, "meta": {...}}
        self.keys_seen: set[str] = set()
        self._lock = threading.Lock()

    # --- lifecycle (start, stop, url, `with`: LoopbackServer) ---------------------------
    def handler(self):
        class Handler(_Handler):
            server_fake = self

        return Handler

    # --- test helpers ---------------------------------------------------------------
    def release(self) -> None:
        self.hold = False

    def created(self) -> list[Job]:
        return list(self.jobs.values())

    def statuses(self, kind: str) -> list[int]:
        return [c["status"] for c in self.calls if c["kind"] == kind]

    # --- behaviour --------------------------------------------------------------------
    def _fault(self, kind: str) -> int | None:
        queue = self.faults.get(kind)
        return queue.pop(0) if queue else None

    def _job_json(self, job: Job) -> dict:
        meta = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": job.model,
            "displayName": job.display_name,
            "state": job.state,
            "createTime": "2026-11-28T00:00:00Z",
            "updateTime": "2026-11-28T00:00:01Z",
            "batchStats": {"requestCount": str(len(job.keys))},
        }
        out = {"name": job.name, "metadata": meta}
        if job.state == "BATCH_STATE_SUCCEEDED":
            out["done"] = True
            if job.source == "inlined":
                items = []
                for key, outcome, request in self._ordered(job):
                    item = {} if self.drop_metadata else {"metadata": {"key": key}}
                    if "max_tokens" in outcome:
                        item["response"] = max_tokens_response(request, job.model_version)
                    elif "error" in outcome:
                        item["error"] = outcome["error"]
                    elif "response" in outcome:
                        item["response"] = outcome["response"]
                    elif "raw" in outcome:  # no raw lines inline: an unusable response object
                        item["response"] = {"candidates": [{"content": {"parts": [{"inlineData": {}}]}}]}
                    else:
                        item["response"] = text_response(outcome["text"], job.model_version)
                    items.append(item)
                meta["output"] = {"inlinedResponses": {"inlinedResponses": items}}
            else:
                meta["output"] = {"responsesFile": job.output_file}
            meta["endTime"] = "2026-11-28T00:00:02Z"
        elif job.state in ("BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"):
            out["done"] = True
            out["error"] = {"code": 13, "message": "internal error while running the batch"}
        return out

    def _ordered(self, job: Job) -> list[tuple]:
        rows = list(zip(job.keys, job.outcomes, job.requests))
        if self.shuffle:  # a fixed permutation that moves every row (reversed order)
            rows.reverse()
        return rows

    def _finish(self, job: Job) -> None:
        job.state = self.final_state
        if job.state == "BATCH_STATE_SUCCEEDED" and job.source == "file":
            lines = []
            for key, outcome, request in self._ordered(job):
                if "max_tokens" in outcome:
                    lines.append(json.dumps({"key": key, "response": max_tokens_response(request, job.model_version)}))
                elif "raw" in outcome:
                    lines.append(outcome["raw"])
                elif "error" in outcome:
                    lines.append(json.dumps({"key": key, "error": outcome["error"]}))
                else:
                    response = outcome.get("response") or text_response(outcome["text"], job.model_version)
                    lines.append(json.dumps({"key": key, "response": response}))
            lines.extend(self.extra_result_lines)
            job.output_file = f"files/batch-{job.name.split('/')[-1]}"
            self.files[job.output_file] = ("\n".join(lines) + "\n").encode("utf-8")

    def model(self, model: str, version: str) -> tuple[int, dict]:
        if model not in self.models:
            return 404, model_not_found(model, version, "get")
        return 200, {
            "name": f"models/{model}",
            "baseModelId": model,
            "version": self.models[model],
            "displayName": model.replace("-", " ").title(),
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens", "batchGenerateContent"],
        }

    def create(self, model: str, body: dict) -> tuple[int, dict]:
        if model not in self.models:
            return 404, model_not_found(model, BATCH_VERSION, "batchGenerateContent")
        batch = body.get("batch") or {}
        source = batch.get("inputConfig") or {}
        if "requests" in source:
            entries = source["requests"].get("requests") or []
            keys = [(e.get("metadata") or {}).get("key") for e in entries]
            requests = [e.get("request") or {} for e in entries]
            kind = "inlined"
        elif "fileName" in source:
            data = self.files.get(source["fileName"])
            if data is None:
                return 404, _error(404, f"file {source['fileName']} not found", "NOT_FOUND")
            rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
            keys = [r.get("key") for r in rows]
            requests = [r.get("request") or {} for r in rows]
            kind = "file"
        else:
            return 400, _error(400, "batch.inputConfig needs requests or fileName", "INVALID_ARGUMENT")
        if not keys or any(not isinstance(k, str) for k in keys):
            return 400, _error(400, "every request needs a key", "INVALID_ARGUMENT")
        name = f"batches/{uuid.uuid4().hex[:12]}"
        outcomes = [
            {"error": {"code": 400, "message": problem, "status": "INVALID_ARGUMENT"}}
            if (problem := request_problem(r))
            else self.responder(k, r)
            for k, r in zip(keys, requests)
        ]
        job = Job(
            name,
            f"models/{model}",
            batch.get("displayName", ""),
            kind,
            keys,
            requests,
            outcomes,
            model_version=self.models[model],
        )
        self.jobs[name] = job
        return 200, self._job_json(job)

    def list_jobs(self, page_size: int, token: str) -> tuple[int, dict]:
        newest_first = list(self.jobs.values())[::-1]
        start = int(token or 0)
        page = newest_first[start : start + page_size]
        out = {"operations": [self._job_json(job) for job in page]}
        if start + page_size < len(newest_first):
            out["nextPageToken"] = str(start + page_size)
        return 200, out

    def get(self, job_id: str) -> tuple[int, dict]:
        job = self.jobs.get(f"batches/{job_id}")
        if job is None:
            return 404, _error(404, f"batch batches/{job_id} not found", "NOT_FOUND")
        job.gets += 1
        if job.state in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
            job.state = "BATCH_STATE_RUNNING"
            if not self.hold and job.gets > self.polls_before_done:
                self._finish(job)
        return 200, self._job_json(job)


def _error(code: int, message: str, status: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}


_CREATE = re.compile(r"^/[^/]+/models/([^/:]+):batchGenerateContent$")
_GET = re.compile(r"^/[^/]+/batches/([^/:]+)$")
_LIST = re.compile(r"^/[^/]+/batches$")
_UPLOAD = re.compile(r"^/upload/[^/]+/files$")
_DOWNLOAD = re.compile(r"^/[^/]+/files/([^/:]+):download$")
_MODEL = re.compile(r"^/([^/]+)/models/([^/:]+)$")


def _api_version(path: str) -> str:
    parts = path.split("/")
    return parts[2] if parts[1] == "upload" else parts[1]


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeGemini
    timeout = 10  # seconds per socket operation
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: tests read `calls`
        pass

    # --- plumbing ---------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/octet-stream" if isinstance(payload, bytes) else "application/json"
        )
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        fake = self.server_fake
        url = urlparse(self.path)
        try:
            body = self._body()
        except ValueError:
            self._send(413, _error(413, "body too large", "INVALID_ARGUMENT"))
            return
        with fake._lock:
            kind, status, payload, headers = self._route(fake, method, url, body)
            fake.calls.append({"method": method, "path": url.path, "kind": kind, "status": status})
        self._send(status, payload, headers)

    def _route(self, fake: FakeGemini, method: str, url, body: bytes):
        if len(fake.calls) >= MAX_REQUESTS:
            return "limit", 503, _error(503, "fake server request limit reached", "UNAVAILABLE"), None
        query = parse_qs(url.query)
        # Upload chunks carry no API key: the upload id in the URL is the credential.
        if method == "POST" and _UPLOAD.match(url.path) and "upload_id" in query:
            return self._upload_chunk(fake, query["upload_id"][0], body)
        key = self.headers.get("x-goog-api-key")
        if key:
            fake.keys_seen.add(key)
        if fake.api_key is not None and key != fake.api_key:
            return "auth", 401, _error(401, "API key not valid. Please pass a valid API key.", "UNAUTHENTICATED"), None
        if method == "GET" and (m := _MODEL.match(url.path)):
            status, payload = fake.model(m.group(2), m.group(1))
            return "model", status, payload, None
        batch_or_file = any(r.match(url.path) for r in (_CREATE, _GET, _LIST, _UPLOAD, _DOWNLOAD))
        if batch_or_file and _api_version(url.path) != BATCH_VERSION:
            return (
                "wrong_version",
                404,
                _error(404, f"The requested URL {url.path} was not found on this server.", "NOT_FOUND"),
                None,
            )
        if method == "POST" and (m := _CREATE.match(url.path)):
            if (fault := fake._fault("create")) is not None:
                return "create", fault, _error(fault, "injected fault", "UNAVAILABLE"), None
            status, payload = fake.create(m.group(1), json.loads(body or b"{}"))
            if status == 200 and (fault := fake._fault("create_after")) is not None:
                return "create", fault, _error(fault, "injected fault after the job was created", "UNAVAILABLE"), None
            return "create", status, payload, None
        if method == "GET" and _LIST.match(url.path):
            size = int((query.get("pageSize") or [fake.page_size])[0])
            status, payload = fake.list_jobs(size, (query.get("pageToken") or [""])[0])
            return "list", status, payload, None
        if method == "GET" and (m := _GET.match(url.path)):
            if (fault := fake._fault("get")) is not None:
                return "get", fault, _error(fault, "injected fault", "UNAVAILABLE"), None
            status, payload = fake.get(m.group(1))
            return "get", status, payload, None
        if method == "POST" and _UPLOAD.match(url.path):
            if (fault := fake._fault("upload_start")) is not None:
                return "upload_start", fault, _error(fault, "injected fault", "UNAVAILABLE"), None
            if (
                self.headers.get("X-Goog-Upload-Protocol") != "resumable"
                or self.headers.get("X-Goog-Upload-Command") != "start"
            ):
                return "upload_start", 400, _error(400, "expected a resumable upload start", "INVALID_ARGUMENT"), None
            upload_id = uuid.uuid4().hex
            meta = json.loads(body or b"{}").get("file") or {}
            fake.uploads[upload_id] = {
                "data": bytearray(),
                "meta": meta,
                "size": int(self.headers.get("X-Goog-Upload-Header-Content-Length") or 0),
                "mime": self.headers.get("X-Goog-Upload-Header-Content-Type") or "",
            }
            version = url.path.split("/")[2]
            upload_url = f"{fake.url}/upload/{version}/files?upload_id={upload_id}&upload_protocol=resumable"
            return "upload_start", 200, {}, {"x-goog-upload-url": upload_url, "x-goog-upload-status": "active"}
        if method == "GET" and (m := _DOWNLOAD.match(url.path)):
            if (fault := fake._fault("download")) is not None:
                return "download", fault, _error(fault, "injected fault", "UNAVAILABLE"), None
            data = fake.files.get(f"files/{m.group(1)}")
            if data is None or query.get("alt") != ["media"]:
                return "download", 404, _error(404, "no such file", "NOT_FOUND"), None
            return "download", 200, data, None
        return "unknown", 404, _error(404, f"no route for {method} {url.path}", "NOT_FOUND"), None

    def _upload_chunk(self, fake: FakeGemini, upload_id: str, body: bytes):
        upload = fake.uploads.get(upload_id)
        if upload is None:
            return "upload", 404, _error(404, "unknown upload id", "NOT_FOUND"), {"x-goog-upload-status": "final"}
        command = self.headers.get("X-Goog-Upload-Command", "")
        offset = int(self.headers.get("X-Goog-Upload-Offset") or -1)
        if offset != len(upload["data"]):
            return (
                "upload",
                400,
                _error(400, "bad upload offset", "INVALID_ARGUMENT"),
                {"x-goog-upload-status": "final"},
            )
        upload["data"].extend(body)
        if "finalize" not in command:
            return "upload", 200, {}, {"x-goog-upload-status": "active"}
        if upload["mime"] not in ACCEPTED_MIME:  # as the service: 200, final, and an error for a body
            message = f"Unsupported MIME type: {upload['mime']}"
            return "upload", 200, _error(400, message, "INVALID_ARGUMENT"), {"x-goog-upload-status": "final"}
        name = f"files/{uuid.uuid4().hex[:12]}"
        fake.files[name] = bytes(upload["data"])
        file_json = {
            "name": name,
            "displayName": upload["meta"].get("displayName", ""),
            "mimeType": upload["mime"],
            "sizeBytes": str(len(upload["data"])),
            "state": "ACTIVE",
            "source": "UPLOADED",
        }
        return "upload", 200, {"file": file_json}, {"x-goog-upload-status": "final"}

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")


def reference_teacher(references: dict[str, str]) -> Callable:
    """Gemini as a good teacher: the problem's own reference solution (`references`:
    normalized question -> reference) rewritten in the style the request's system prompt asks."""
    from lib import problems, styles
    from lib.teachers import reference

    def respond(key, request):
        question = request["contents"][0]["parts"][0]["text"]
        system = request["systemInstruction"]["parts"][0]["text"]
        style = "cod" if system == styles.COD_PROMPT else "cot"
        ref = references[problems.normalize_question(question)]
        return {"text": reference.rewrite({"question": question, "reference": ref}, style)}

    return respond
