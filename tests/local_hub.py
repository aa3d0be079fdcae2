"""A local stand-in for the Hugging Face Hub, for running the `full` profile's loading code
unchanged with no network: `HF_ENDPOINT=<LocalHub.url>` and a fresh `HF_HOME`.

Why a server and not a pre-filled cache: `datasets` 4.x under `HF_HUB_OFFLINE=1` never reads
the hub cache; it only reuses a dataset already *prepared* in its own cache by an earlier
online load (`CachedDatasetModuleFactory` in `datasets/load.py`). A server lets the very
calls of a networked run happen — `datasets.load_dataset`, transformers' and PEFT's
`from_pretrained`, vLLM's config/tokenizer/weight loading — through `huggingface_hub`.

Only what those libraries call (huggingface_hub 1.x `hf_api.py`, `file_download.py`,
`hf_file_system.py`; datasets `load.py`), answered as the Hub answers:

- `GET /api/{models|datasets}/{repo}[/revision/{rev}]`: repo info (`id`, `sha`, `siblings`,
  `cardData`; `siblings` carry size / blobId / lfs when `blobs=true`).
- `GET /api/{type}s/{repo}/tree/{rev}[/{path}]?recursive=&expand=`: one directory's entries
  (all below it when recursive), files `{type, oid, size, path[, lfs]}`, folders `{type, oid, path}`.
- `POST /api/{type}s/{repo}/paths-info/{rev}` (form `paths`, `expand`): the entries that exist.
- `HEAD|GET /{repo}/resolve/{rev}/{path}` (models) and `/datasets/{repo}/resolve/...`:
  the bytes with `X-Repo-Commit`, `ETag` (the git blob id, or the sha256 for LFS files, as
  `X-Linked-Etag`), `Content-Length`; byte ranges answered with 206.

Strict like the Hub: an unknown repo is 404 `X-Error-Code: RepoNotFound`, an unknown
revision 404 `RevisionNotFound`, a missing file 404 `EntryNotFound`, any other path 404.
Revisions are `main` or a commit sha of the repo: `Repo.move` makes a new commit on `main` (a
repository updated in the middle of a run) and the earlier ones stay served by their sha, as on
the Hub. Every call is recorded (method, path, status).

`build_repos(root)` writes the four repositories the `full` profile names, with small
contents laid out as the real ones (dataset cards with `configs:`, parquet per config and
split; Qwen3 `config.json` keys, `generation_config.json`, tokenizer files with a Qwen3-style
chat template, sharded safetensors with an index for the 14B, one file for the 0.6B).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from loopback import LoopbackServer

LFS_SUFFIXES = (".parquet", ".safetensors", ".bin")
REPO_ID = r"[A-Za-z0-9][\w.-]*/[\w.-]+"


def _sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _git_blob(b: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(b) + b).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A file too large to hold in memory (true-size weights): served from `path`, whose
    sha256 is known. Laid out as the Hub cache's own blob, a client that already holds it
    skips the download as it would for the real repository (one copy on disk)."""

    path: Path
    sha256: str
    size: int

    @classmethod
    def of(cls, path: Path) -> "Blob":
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                h.update(chunk)
        return cls(Path(path), h.hexdigest(), Path(path).stat().st_size)

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        with open(self.path, "rb") as fh:
            fh.seek(start)
            return fh.read((self.size if end is None else end + 1) - start)


@dataclass
class Repo:
    repo_id: str
    kind: str  # "model" | "dataset"
    files: dict[str, bytes | Blob]
    card: dict = field(default_factory=dict)
    history: dict[str, dict] = field(default_factory=dict)  # earlier commits: sha -> files, still served

    def at(self, revision: str | None) -> "Repo | None":
        """The repository at `revision` (None / `main`: the head; an earlier commit's sha: its
        files, as the Hub serves any commit), or None where it names no commit."""
        if revision in (None, "main", self.sha):
            return self
        if revision in self.history:
            return Repo(self.repo_id, self.kind, self.history[revision], self.card)
        return None

    def move(self, path: str, data: bytes) -> tuple[str, str]:
        """A new commit on `main` changing `path` (the repository updated on the Hub in the middle
        of a run): the old commit stays served by its sha. Returns (old sha, new sha)."""
        old = self.sha
        self.history[old] = dict(self.files)
        self.files = {**self.files, path: data}
        return old, self.sha

    @property
    def sha(self) -> str:
        h = hashlib.sha1()
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + self._sha256(path).encode())
        return h.hexdigest()

    def _sha256(self, path: str) -> str:
        data = self.files[path]
        return data.sha256 if isinstance(data, Blob) else _sha256(data)

    def is_lfs(self, path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)

    def file_entry(self, path: str) -> dict:
        data = self.files[path]
        if isinstance(data, Blob):  # only LFS files are that large
            return {
                "type": "file",
                "oid": _git_blob(data.sha256.encode()),
                "size": data.size,
                "path": path,
                "lfs": {"oid": data.sha256, "size": data.size, "pointerSize": 134},
            }
        entry = {"type": "file", "oid": _git_blob(data), "size": len(data), "path": path}
        if self.is_lfs(path):
            entry["lfs"] = {"oid": _sha256(data), "size": len(data), "pointerSize": 134}
        return entry

    def dirs(self) -> set[str]:
        out = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            out |= {"/".join(parts[: i + 1]) for i in range(len(parts))}
        return out

    def folder_entry(self, path: str) -> dict:
        return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}

    def entry(self, path: str) -> dict | None:
        if path in self.files:
            return self.file_entry(path)
        if path in self.dirs():
            return self.folder_entry(path)
        return None


class LocalHub(LoopbackServer):
    """`with LocalHub(repos) as hub:` serves `repos` on 127.0.0.1 (ephemeral port)."""

    def __init__(self, repos: list[Repo]):
        self.repos = {(r.kind, r.repo_id): r for r in repos}
        self.calls: list[tuple[str, str, int]] = []

    def copy(self, extra: list[Repo] = ()) -> "LocalHub":
        """Another server over copies of these repositories (and `extra`): one a test may move
        without moving the session's."""
        return LocalHub([copy.deepcopy(r) for r in self.repos.values()] + list(extra))

    def repo(self, repo_id: str, kind: str = "model") -> Repo:
        return self.repos[(kind, repo_id)]

    def handler(self):
        class Handler(_Handler):
            hub = self

        return Handler

    def references(self) -> dict[str, str]:
        """normalized question -> reference solution, from the served datasets' parquet files."""
        import io

        import pyarrow.parquet as pq

        from lib import problems

        out = {}
        for (kind, _), repo in self.repos.items():
            for path, data in repo.files.items():
                if kind == "dataset" and path.endswith(".parquet"):
                    for rec in pq.read_table(io.BytesIO(data)).to_pylist():
                        q, s = (
                            (rec["question"], rec["answer"]) if "question" in rec else (rec["problem"], rec["solution"])
                        )
                        out[problems.normalize_question(q)] = s
        return out

    def env(self, hf_home: Path) -> dict[str, str]:
        """The only difference from a networked run: where the Hub is, and a fresh cache."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
        }


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, *args) -> None:  # quiet: tests read hub.calls
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.hub.calls.append((self.command, self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, code: str, message: str) -> None:
        self._json({"error": message}, 404, {"X-Error-Code": code, "X-Error-Message": message})

    def _repo(self, kind: str, repo_id: str, revision: str | None) -> Repo | None:
        repo = self.hub.repos.get((kind, repo_id))
        if repo is None:
            self._error("RepoNotFound", f"Repository Not Found for url: {self.path}.")
            return None
        found = repo.at(revision)
        if found is None:
            self._error("RevisionNotFound", f"Invalid rev id: {revision}")
        return found

    def do_HEAD(self) -> None:  # noqa: N802
        self._route()

    def do_GET(self) -> None:  # noqa: N802
        self._route()

    def do_POST(self) -> None:  # noqa: N802
        self._route()

    def _route(self) -> None:
        url = urlparse(self.path)
        path, query = url.path, parse_qs(url.query)
        m = re.fullmatch(rf"/api/(models|datasets)/({REPO_ID})(?:/revision/([^/]+))?", path)
        if m and self.command == "GET":
            return self._info(m.group(1)[:-1], m.group(2), unquote(m.group(3)) if m.group(3) else None, query)
        m = re.fullmatch(rf"/api/(models|datasets)/({REPO_ID})/tree/([^/]+)(?:/(.*))?", path)
        if m and self.command == "GET":
            return self._tree(m.group(1)[:-1], m.group(2), unquote(m.group(3)), unquote(m.group(4) or ""), query)
        m = re.fullmatch(rf"/api/(models|datasets)/({REPO_ID})/paths-info/([^/]+)", path)
        if m and self.command == "POST":
            return self._paths_info(m.group(1)[:-1], m.group(2), unquote(m.group(3)))
        m = re.fullmatch(rf"/(datasets/)?({REPO_ID})/resolve/([^/]+)/(.+)", path)
        if m and self.command in ("GET", "HEAD"):
            return self._resolve(
                "dataset" if m.group(1) else "model", m.group(2), unquote(m.group(3)), unquote(m.group(4))
            )
        self._json({"error": f"no such endpoint: {self.command} {path}"}, 404)

    def _info(self, kind: str, repo_id: str, revision: str | None, query) -> None:
        repo = self._repo(kind, repo_id, revision)
        if repo is None:
            return
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for p in sorted(repo.files):
            sib = {"rfilename": p}
            if blobs:
                e = repo.file_entry(p)
                sib.update(
                    size=e["size"],
                    blobId=e["oid"],
                    **(
                        {"lfs": {"sha256": e["lfs"]["oid"], "size": e["size"], "pointerSize": 134}}
                        if "lfs" in e
                        else {}
                    ),
                )
            siblings.append(sib)
        info = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": repo.sha,
            "lastModified": "2025-01-01T00:00:00.000Z",
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "createdAt": "2024-01-01T00:00:00.000Z",
            "cardData": repo.card,
        }
        if kind == "model":
            config = json.loads(repo.files.get("config.json", b"{}"))
            info.update(
                modelId=repo_id,
                library_name="transformers",
                pipeline_tag="text-generation",
                config={"architectures": config.get("architectures"), "model_type": config.get("model_type")},
            )
        self._json(info)

    def _tree(self, kind: str, repo_id: str, revision: str, base: str, query) -> None:
        repo = self._repo(kind, repo_id, revision)
        if repo is None:
            return
        base = base.strip("/")
        if base and base not in repo.dirs():
            return self._error("EntryNotFound", f"{base} does not exist on {revision}")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{base}/" if base else ""
        entries = []
        for p in sorted(repo.dirs() | set(repo.files)):
            if not p.startswith(prefix) or p == base:
                continue
            if not recursive and "/" in p[len(prefix) :]:
                continue
            entries.append(repo.entry(p))
        self._json(entries)

    def _paths_info(self, kind: str, repo_id: str, revision: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        repo = self._repo(kind, repo_id, revision)
        if repo is None:
            return
        if "json" in (self.headers.get("Content-Type") or ""):
            paths = json.loads(body or "{}").get("paths", [])
        else:
            paths = parse_qs(body).get("paths", [])
        self._json([e for e in (repo.entry(p.strip("/")) for p in paths) if e is not None])

    def _resolve(self, kind: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(kind, repo_id, revision)
        if repo is None:
            return
        if path not in repo.files:
            return self._error("EntryNotFound", f"Entry not found: {path}")
        data = repo.files[path]
        e = repo.file_entry(path)
        size = e["size"]
        etag = f'"{e["lfs"]["oid"] if "lfs" in e else e["oid"]}"'
        headers = {"X-Repo-Commit": repo.sha, "ETag": etag, "Accept-Ranges": "bytes"}
        if "lfs" in e:
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(size)})
        if self.command == "HEAD" and isinstance(data, Blob):  # the length, not the bytes
            return self._send(200, b"", headers, "application/octet-stream")
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if rng and self.command == "GET":
            start = int(rng.group(1))
            end = min(int(rng.group(2)) if rng.group(2) else size - 1, size - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            body = data.read(start, end) if isinstance(data, Blob) else data[start : end + 1]
            return self._send(206, body, headers, "application/octet-stream")
        self._send(200, data.read() if isinstance(data, Blob) else data, headers, "application/octet-stream")


# ---------------------------------------------------------------------------------------
# Repository contents: small stand-ins laid out as the real repositories
# ---------------------------------------------------------------------------------------


def _card(front: dict, title: str) -> bytes:
    import yaml

    return f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n# {title}\n\nA small local stand-in.\n".encode()


def _parquet(rows: list[dict], columns: list[str]) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: [r[c] for r in rows] for c in columns})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _dataset_repo(repo_id: str, splits: dict[str, dict[str, list[dict]]], columns: list[str], title: str) -> Repo:
    """`splits[config][split] = rows`: a card with `dataset_info` and `configs:` (one data
    folder per config, `{split}-00000-of-00001.parquet`) as the Hub's parquet repos have."""
    files, infos, configs = {}, [], []
    for config, by_split in splits.items():
        for split, rows in by_split.items():
            files[f"{config}/{split}-00000-of-00001.parquet"] = _parquet(rows, columns)
        infos.append(
            {
                "config_name": config,
                "features": [{"name": c, "dtype": "string"} for c in columns],
                "splits": [{"name": s, "num_examples": len(r)} for s, r in by_split.items()],
            }
        )
        configs.append(
            {"config_name": config, "data_files": [{"split": s, "path": f"{config}/{s}-*"} for s in by_split]}
        )
    front = {"license": "mit", "dataset_info": infos, "configs": configs}
    files["README.md"] = _card(front, title)
    files[".gitattributes"] = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    return Repo(repo_id, "dataset", files, card=front)


SUBJECTS = {"Algebra": "algebra", "Intermediate Algebra": "intermediate_algebra", "Precalculus": "precalculus"}


def dataset_repos(n_easy: int = 240, n_math: int = 320, shared: int = 2) -> list[Repo]:
    """openai/gsm8k (configs main and socratic) and EleutherAI/hendrycks_math (one config per
    subject, no default), drawn from the workbook's own problem generator in the real
    columns; `shared` questions of each train split are repeated in its test split, as the
    real datasets sometimes do (for MATH, one of each level per subject)."""
    from lib import problems

    easy = problems.generate("easy", n_easy, seed=7)
    gsm = [{"question": r["question"], "answer": r["reference"]} for r in easy]
    cut = n_easy * 3 // 4
    gsm_train, gsm_test = gsm[:cut], gsm[cut:] + gsm[:shared]
    gsm8k = _dataset_repo(
        "openai/gsm8k",
        {
            "main": {"train": gsm_train, "test": gsm_test},
            "socratic": {"train": gsm_train, "test": gsm_test},
        },
        ["question", "answer"],
        "Dataset Card for GSM8K",
    )

    rows = problems.generate("medium", n_math // 2, seed=7) + problems.generate("hard", n_math // 2, seed=7)
    subjects = list(SUBJECTS)
    by_config: dict[str, list[dict]] = {c: [] for c in SUBJECTS.values()}
    for i, r in enumerate(rows):
        kind = r["type"] if r["level"] in ("Level 3", "Level 4") else subjects[i % 3]  # spread the easy levels too
        level = "Level 5" if i % 17 == 0 else r["level"]  # some rows the study's filter drops
        by_config[SUBJECTS[kind]].append(
            {"problem": r["question"], "level": level, "type": kind, "solution": r["reference"]}
        )
    math_splits = {}
    for config, items in by_config.items():
        cut = len(items) * 3 // 4
        firsts = list({r["level"]: r for r in reversed(items[:cut])}.values())  # first train row of each level
        math_splits[config] = {"train": items[:cut], "test": items[cut:] + firsts[: shared * 3]}
    math = _dataset_repo(
        "EleutherAI/hendrycks_math",
        math_splits,
        ["problem", "level", "type", "solution"],
        "MATH dataset from https://github.com/hendrycks/math",
    )
    return [gsm8k, math]


# A Qwen3-style chat template: ChatML turns, `<think>` blocks stripped from earlier assistant
# turns, and `enable_thinking=False` pre-filling an empty think block, as Qwen3's own does.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' and '</think>' in message['content'] -%}"
    "{%- set content = message['content'].split('</think>')[-1].lstrip('\\n') -%}"
    "{%- else -%}{%- set content = message['content'] -%}{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)


def tokenizer_files(texts: list[str], work: Path) -> tuple[dict[str, bytes], object]:
    """tokenizer.json, tokenizer_config.json (Qwen3's keys and template), vocab.json,
    merges.txt: a small byte-level BPE trained here (the offline base pair's builder)."""
    from lib import base_pair

    tok = base_pair.train_tokenizer(texts, 600, work / "tok")
    tok.add_tokens(["<think>", "</think>"])  # Qwen3: added, not special
    tok.chat_template = QWEN3_CHAT_TEMPLATE
    tok.save_pretrained(work / "tok")
    cfg = json.loads((work / "tok" / "tokenizer_config.json").read_text())
    cfg.update(
        {
            "add_bos_token": False,
            "add_prefix_space": False,
            "bos_token": None,
            "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>",
            "errors": "replace",
            "model_max_length": 131072,
            "pad_token": "<|endoftext|>",
            "split_special_tokens": False,
            "unk_token": None,
            "chat_template": QWEN3_CHAT_TEMPLATE,
            "tokenizer_class": "Qwen2Tokenizer",
        }
    )  # as Qwen3's; transformers 5 reads tokenizer.json for it
    files = {"tokenizer_config.json": json.dumps(cfg, indent=2).encode()}
    files["tokenizer.json"] = (work / "tok" / "tokenizer.json").read_bytes()
    model = json.loads(files["tokenizer.json"])["model"]
    files["vocab.json"] = json.dumps(model["vocab"], ensure_ascii=False).encode()
    files["merges.txt"] = (
        "#version: 0.2\n" + "\n".join(m if isinstance(m, str) else " ".join(m) for m in model["merges"]) + "\n"
    ).encode()
    return files, tok


def qwen3_config(tok, dims: dict, tie: bool, vocab_size: int | None = None) -> dict:
    """The keys and order of Qwen/Qwen3-*'s config.json with the given dimensions
    (`TRUE_SIZES` holds the published ones); the vocabulary is the tokenizer's unless given."""
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": tok.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tok.convert_tokens_to_ids("<|im_end|>"),
        "head_dim": dims["head_dim"],
        "hidden_act": "silu",
        "hidden_size": dims["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": dims["intermediate_size"],
        "max_position_embeddings": dims["max_position_embeddings"],
        "max_window_layers": dims["layers"],
        "model_type": "qwen3",
        "num_attention_heads": dims["heads"],
        "num_hidden_layers": dims["layers"],
        "num_key_value_heads": dims["kv_heads"],
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "tie_word_embeddings": tie,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size or len(tok),
    }


# The published dimensions (config.json of Qwen/Qwen3-14B and Qwen/Qwen3-0.6B).
TRUE_SIZES = {
    "Qwen/Qwen3-14B": (
        {
            "hidden_size": 5120,
            "intermediate_size": 17408,
            "layers": 40,
            "heads": 40,
            "kv_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 40960,
        },
        False,
    ),
    "Qwen/Qwen3-0.6B": (
        {
            "hidden_size": 1024,
            "intermediate_size": 3072,
            "layers": 28,
            "heads": 16,
            "kv_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 40960,
        },
        True,
    ),
}
TRUE_VOCAB = 151936


def hf_model(config: dict):
    """A random transformers Qwen3 model of `config` (config.json's keys)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    skip = ("architectures", "torch_dtype", "transformers_version")
    return Qwen3ForCausalLM(Qwen3Config(**{k: v for k, v in config.items() if k not in skip}))


def config_files(config: dict) -> dict[str, bytes]:
    bos, eos = config["bos_token_id"], config["eos_token_id"]
    return {
        "config.json": json.dumps(config, indent=2).encode(),
        "generation_config.json": json.dumps(
            {
                "bos_token_id": bos,
                "do_sample": True,
                "eos_token_id": [eos, bos],
                "pad_token_id": bos,
                "temperature": 0.6,
                "top_k": 20,
                "top_p": 0.95,
                "transformers_version": "4.51.0",
            },
            indent=2,
        ).encode(),
    }


def _model_files(tok, spec: dict, tie: bool, shards: bool, work: Path, seed: int) -> dict[str, bytes]:
    import torch

    dims = {"head_dim": 64, "kv_heads": 1, "max_position_embeddings": 4096, **spec}
    config = qwen3_config(tok, dims, tie)
    torch.manual_seed(seed)
    model = hf_model(config).to(torch.bfloat16)
    out = work / f"model-{seed}"
    model.save_pretrained(out, max_shard_size="200KB" if shards else "10GB")
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.name.endswith((".safetensors", ".index.json"))}
    if shards:
        assert "model.safetensors.index.json" in files and len(files) > 2, sorted(files)
    return {**files, **config_files(config)}


def model_card_files(repo_id: str) -> dict[str, bytes]:
    return {
        "README.md": _card(
            {"license": "apache-2.0", "library_name": "transformers", "pipeline_tag": "text-generation"}, repo_id
        ),
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
        "LICENSE": b"Apache License 2.0 (stand-in)\n",
    }


MODEL_CARD = {"license": "apache-2.0", "library_name": "transformers"}


def tokenizer_corpus() -> list[str]:
    from lib import problems
    from lib.styles import SYSTEM_PROMPTS

    texts = list(SYSTEM_PROMPTS.values())
    for scenario in problems.SCENARIOS:
        texts += [r["question"] + "\n" + r["reference"] for r in problems.generate(scenario, 200, seed=7)]
    return texts


def model_repos(work: Path) -> list[Repo]:
    """Qwen/Qwen3-14B and Qwen/Qwen3-0.6B: random tiny Qwen3 models (target larger than draft)
    sharing one tokenizer; the 14B sharded with an index and untied embeddings, the 0.6B one
    `model.safetensors` with tied embeddings, as the real repositories are."""
    tok_files, tok = tokenizer_files(tokenizer_corpus(), work)
    specs = {
        "Qwen/Qwen3-14B": ({"hidden_size": 128, "intermediate_size": 256, "layers": 2, "heads": 2}, False, True),
        "Qwen/Qwen3-0.6B": ({"hidden_size": 64, "intermediate_size": 128, "layers": 1, "heads": 1}, True, False),
    }
    repos = []
    for i, (repo_id, (spec, tie, shards)) in enumerate(specs.items()):
        files = {**tok_files, **_model_files(tok, spec, tie, shards, work, seed=i), **model_card_files(repo_id)}
        repos.append(Repo(repo_id, "model", files, card=MODEL_CARD))
    return repos


def build_repos(work: Path) -> list[Repo]:
    work.mkdir(parents=True, exist_ok=True)
    return dataset_repos() + model_repos(work)
