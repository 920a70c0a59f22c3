"""A loopback server speaking the part of the Hugging Face Hub protocol that a push and a pull use.

Selected with ``HF_ENDPOINT=http://127.0.0.1:<port>``, it lets tests push a checkpoint with
huggingface_hub and load it back with ``from_pretrained(repo_id, trust_remote_code=True)`` offline.
It keeps real state: repositories, branches and commits (snapshots of path -> blob), blobs stored
by content in a temporary folder. What is uploaded is what is served back; nothing is canned.

Endpoints (models, datasets and spaces alike):

    POST /api/repos/create                         {name, organization, visibility, type} -> 409 if it exists
    POST /api/validate-yaml                        parses the README front matter (400 with errors)
    GET  /api/whoami-v2                            the token's user
    POST /api/{type}s/{repo}/preupload/{rev}       every file "regular" (inline base64 in the commit), remote oid
    POST /api/{type}s/{repo}/commit/{rev}          NDJSON: header, file, deletedFile, deletedFolder; parentCommit
    POST /api/{type}s/{repo}/branch/{branch}       {startingPoint}; 409 if it exists
    GET  /api/{type}s/{repo}[/revision/{rev}]      id, sha, private, siblings, cardData, tags
    GET  /api/{type}s/{repo}/refs                  branches
    GET  /api/{type}s/{repo}/tree/{rev}[/{path}]   ?recursive=
    HEAD/GET /[{type}s/]{repo}/resolve/{rev}/{path}  X-Repo-Commit, ETag (git blob sha1), Content-Length, Range

Errors carry the Hub's ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound), so
huggingface_hub raises its usual exceptions. With ``token`` set, writes need ``Authorization: Bearer
<token>`` and a private repository is invisible without it.

Not implemented: LFS/Xet uploads (preupload always answers ``uploadMode: "regular"``, so files travel
inside the commit, base64), pull requests, tags, commit listings. Bounded: request size, total stored
bytes, repositories, files per commit, request log length, and a lifetime after which it stops itself.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import re
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_SEG = r"[^/]+"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict | None = None, body: dict | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.body = body or {}


class HubState:
    """Repositories, commits and blobs. All methods are called under ``lock``."""

    def __init__(self, root: Path, max_total_bytes: int, max_repos: int, max_files: int):
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        self.max_total_bytes, self.max_repos, self.max_files = max_total_bytes, max_repos, max_files
        self.total_bytes = 0
        self.repos: dict[tuple[str, str], dict] = {}
        self.commits: dict[str, dict] = {}  # oid -> {parent, files: {path: sha256}, summary, description, date}
        self.blobs: dict[str, dict] = {}  # sha256 -> {size, git_sha1}
        self.lock = threading.Lock()
        self._counter = 0

    # --- storage ---
    def put_blob(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        if key not in self.blobs:
            if self.total_bytes + len(data) > self.max_total_bytes:
                raise HubError(413, f"storage limit of {self.max_total_bytes} bytes reached")
            (self.root / "blobs" / key).write_bytes(data)
            self.blobs[key] = {"size": len(data), "git_sha1": git_blob_sha1(data)}
            self.total_bytes += len(data)
        return key

    def read_blob(self, key: str) -> bytes:
        return (self.root / "blobs" / key).read_bytes()

    def new_commit(self, parent: str | None, files: dict, summary: str, description: str = "") -> str:
        self._counter += 1
        seed = json.dumps([parent, sorted(files.items()), summary, description, self._counter, time.time()])
        oid = hashlib.sha1(seed.encode()).hexdigest()
        self.commits[oid] = {
            "parent": parent,
            "files": dict(files),
            "summary": summary,
            "description": description,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        }
        return oid

    # --- lookups ---
    def repo(self, repo_type: str, repo_id: str, authorized: bool) -> dict:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo["private"] and not authorized):
            raise HubError(404 if repo is None else 401, f"Repository {repo_id!r} not found", "RepoNotFound")
        return repo

    def resolve(self, repo: dict, revision: str) -> str:
        if revision in repo["branches"]:
            return repo["branches"][revision]
        if re.fullmatch(r"[0-9a-f]{40}", revision) and revision in repo["commits"]:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackHub/1.0"
    hub: "LoopbackHub"  # set on the subclass

    # --- plumbing ---
    def log_message(self, format, *args):  # noqa: A002 - keep pytest output clean
        pass

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict | None = None,
        content_type="application/json",
        head=False,
        length=None,
    ):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None, head=False):
        self._send(status, json.dumps(payload).encode(), headers, head=head)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                if total > self.hub.max_request_bytes:
                    raise HubError(413, "request too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.hub.max_request_bytes:
            self.close_connection = True
            raise HubError(413, f"request of {length} bytes is over the limit of {self.hub.max_request_bytes}")
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> bool:
        token = self.hub.token
        return token is None or self.headers.get("Authorization", "") == f"Bearer {token}"

    def _require_write(self):
        if not self._authorized():
            raise HubError(
                401,
                "Invalid credentials in Authorization header",
                headers={"X-Error-Message": "Invalid credentials in Authorization header"},
            )

    def _dispatch(self, method: str):
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        entry = {"method": method, "path": unquote(url.path), "query": query, "status": None, "json": None}
        try:
            body = self._body() if method == "POST" else b""
            if (
                body
                and "json" in self.headers.get("Content-Type", "")
                and "ndjson" not in self.headers.get("Content-Type", "")
            ):
                entry["json"] = json.loads(body)
            status = self._route(method, parts, query, body, entry)
        except HubError as err:
            headers = dict(err.headers)
            if err.code:
                headers["X-Error-Code"] = err.code
            headers.setdefault("X-Error-Message", err.message)
            status = err.status
            self._json(status, {"error": err.message, **err.body}, headers, head=method == "HEAD")
        except Exception as err:  # a bug in the fixture: report it as a 500 instead of hanging the client
            status = 500
            self._json(500, {"error": f"{type(err).__name__}: {err}"}, head=method == "HEAD")
        entry["status"] = status
        with self.hub.state.lock:
            self.hub.requests.append(entry)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    # --- routes ---
    def _route(self, method, parts, query, body, entry) -> int:
        hub, state = self.hub, self.hub.state
        path = "/".join(parts)
        if method == "POST" and path == "api/repos/create":
            return self._create_repo(entry["json"] or {})
        if method == "POST" and path == "api/validate-yaml":
            return self._validate_yaml(entry["json"] or {})
        if method == "GET" and path == "api/whoami-v2":
            if hub.token is None or not self._authorized():
                raise HubError(401, "Invalid credentials in Authorization header")
            self._json(
                200,
                {
                    "type": "user",
                    "name": hub.user,
                    "fullname": hub.user,
                    "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "write"}},
                },
            )
            return 200
        if len(parts) >= 4 and parts[0] == "api" and parts[1] in REPO_TYPES:
            repo_type, repo_id, rest = REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}", parts[4:]
            with state.lock:
                repo = state.repo(repo_type, repo_id, self._authorized())
            return self._repo_api(method, repo_type, repo_id, repo, rest, query, body)
        # resolve: /{ns}/{name}/resolve/{rev}/{path} or /{type}s/{ns}/{name}/resolve/{rev}/{path}
        repo_type = "model"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type, parts = REPO_TYPES[parts[0]], parts[1:]
        if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(method, repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        raise HubError(404, f"no such endpoint: {method} /{path}")

    def _create_repo(self, payload) -> int:
        self._require_write()
        name, org = payload.get("name"), payload.get("organization")
        if not name or not re.fullmatch(r"[\w.-]+", name):
            raise HubError(400, f"invalid repo name {name!r}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{org or self.hub.user}/{name}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.hub.endpoint}/{prefix}{repo_id}"
        state = self.hub.state
        with state.lock:
            if (repo_type, repo_id) in state.repos:
                raise HubError(409, f"You already created this {repo_type} repo", body={"url": url})
            if len(state.repos) >= state.max_repos:
                raise HubError(403, f"repository limit of {state.max_repos} reached")
            oid = state.new_commit(None, {}, "initial commit")
            state.repos[(repo_type, repo_id)] = {
                "id": repo_id,
                "type": repo_type,
                "private": payload.get("visibility") == "private" or bool(payload.get("private")),
                "branches": {"main": oid},
                "commits": {oid},
                "created": state.commits[oid]["date"],
            }
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})
        return 200

    def _validate_yaml(self, payload) -> int:
        content = payload.get("content", "")
        errors, warnings = [], []
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.DOTALL)
        if match is None:
            warnings.append({"message": "empty or missing yaml metadata in repo card"})
        else:
            try:
                data = yaml.safe_load(match.group(1))
            except yaml.YAMLError as err:
                errors.append({"message": f"invalid YAML: {err}"})
            else:
                if data is not None and not isinstance(data, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
                elif isinstance(data, dict):
                    for key in ("tags", "datasets"):
                        if key in data and not isinstance(data[key], (list, str)):
                            errors.append({"message": f"'{key}' must be a list of strings"})
                    if "model-index" in data and not isinstance(data["model-index"], list):
                        errors.append({"message": "'model-index' must be a list"})
        self._json(400 if errors else 200, {"errors": errors, "warnings": warnings})
        return 400 if errors else 200

    def _repo_api(self, method, repo_type, repo_id, repo, rest, query, body) -> int:
        state = self.hub.state
        if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
            self._require_write()
            payload = json.loads(body or b"{}")
            with state.lock:
                files = state.commits[state.resolve(repo, rest[1])]["files"]
                answer = [
                    {
                        "path": f["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": state.blobs[files[f["path"]]]["git_sha1"] if f["path"] in files else None,
                    }
                    for f in payload.get("files", [])
                ]
            self._json(200, {"files": answer})
            return 200
        if method == "POST" and len(rest) == 2 and rest[0] == "commit":
            self._require_write()
            return self._commit(repo, rest[1], query, body)
        if method == "POST" and len(rest) == 2 and rest[0] == "branch":
            self._require_write()
            payload = json.loads(body or b"{}")
            with state.lock:
                if rest[1] in repo["branches"]:
                    raise HubError(409, f"Branch {rest[1]!r} already exists")
                start = state.resolve(repo, payload.get("startingPoint") or "main")
                repo["branches"][rest[1]] = start
            self._json(200, {})
            return 200
        if method == "GET" and rest == ["refs"]:
            with state.lock:
                branches = [
                    {"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid} for n, oid in repo["branches"].items()
                ]
            self._json(200, {"branches": branches, "tags": [], "converts": []})
            return 200
        if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
            return self._tree(
                repo, rest[1], "/".join(rest[2:]).strip("/"), query.get("recursive") in ("1", "true", "True")
            )
        if method == "GET" and (not rest or (len(rest) == 2 and rest[0] == "revision")):
            return self._info(repo, rest[1] if rest else "main")
        raise HubError(404, f"no such endpoint: {method} /api/{repo_type}s/{repo_id}/{'/'.join(rest)}")

    def _commit(self, repo, revision, query, body) -> int:
        if query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by this loopback server")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the first NDJSON line must be the commit header")
        header = lines[0]["value"]
        if not header.get("summary"):
            raise HubError(400, "commit summary is empty")
        state = self.hub.state
        with state.lock:
            if revision not in repo["branches"]:
                raise HubError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
            head = repo["branches"][revision]
            parent = header.get("parentCommit")
            if parent and not head.startswith(parent):
                raise HubError(412, f"A commit has happened since {parent}: the head of {revision} is {head}")
            files = dict(state.commits[head]["files"])
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "")
                if not path or path.startswith("/") or ".." in path.split("/"):
                    raise HubError(400, f"invalid path {path!r}")
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise HubError(400, f"unsupported encoding {value.get('encoding')!r} for {path}")
                    files[path] = state.put_blob(base64.b64decode(value["content"]))
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                else:  # lfsFile / copies: never requested, since preupload answers "regular"
                    raise HubError(400, f"unsupported commit operation {key!r} (this server stores regular files only)")
            if len(files) > state.max_files:
                raise HubError(413, f"a commit may hold at most {state.max_files} files")
            oid = state.new_commit(head, files, header["summary"], header.get("description", ""))
            repo["commits"].add(oid)
            repo["branches"][revision] = oid
        prefix = "" if repo["type"] == "model" else f"{repo['type']}s/"
        self._json(
            200,
            {
                "success": True,
                "commitOid": oid,
                "commitUrl": f"{self.hub.endpoint}/{prefix}{repo['id']}/commit/{oid}",
                "pullRequestUrl": None,
            },
        )
        return 200

    def _tree(self, repo, revision, prefix, recursive) -> int:
        state = self.hub.state
        with state.lock:
            files = state.commits[state.resolve(repo, revision)]["files"]
            entries, folders = [], set()
            for path, key in sorted(files.items()):
                if prefix and not path.startswith(prefix + "/"):
                    continue
                rel = path[len(prefix) + 1 :] if prefix else path
                if "/" in rel and not recursive:
                    folders.add((prefix + "/" if prefix else "") + rel.split("/")[0])
                    continue
                if recursive:
                    pieces = rel.split("/")[:-1]
                    for i in range(1, len(pieces) + 1):
                        folders.add((prefix + "/" if prefix else "") + "/".join(pieces[:i]))
                entries.append(
                    {
                        "type": "file",
                        "path": path,
                        "size": state.blobs[key]["size"],
                        "oid": state.blobs[key]["git_sha1"],
                    }
                )
            if prefix and not entries and not folders:
                raise HubError(404, f"{prefix} does not exist on {revision}", "EntryNotFound")
            entries += [
                {"type": "directory", "path": f, "size": 0, "oid": hashlib.sha1(f.encode()).hexdigest()}
                for f in sorted(folders)
            ]
        self._json(200, entries)
        return 200

    def _info(self, repo, revision) -> int:
        state = self.hub.state
        with state.lock:
            oid = state.resolve(repo, revision)
            files = state.commits[oid]["files"]
            card = state.read_blob(files["README.md"]).decode() if "README.md" in files else ""
            commit_date = state.commits[oid]["date"]
        card_data = {}
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", card, flags=re.DOTALL)
        if match:
            try:
                card_data = yaml.safe_load(match.group(1)) or {}
            except yaml.YAMLError:
                card_data = {}
        self._json(
            200,
            {
                "_id": hashlib.sha1(repo["id"].encode()).hexdigest()[:24],
                "id": repo["id"],
                "modelId": repo["id"],
                "author": repo["id"].split("/")[0],
                "sha": oid,
                "private": repo["private"],
                "gated": False,
                "disabled": False,
                "lastModified": commit_date,
                "createdAt": repo["created"],
                "downloads": 0,
                "likes": 0,
                "tags": list(card_data.get("tags") or []),
                "pipeline_tag": card_data.get("pipeline_tag"),
                "library_name": card_data.get("library_name"),
                "cardData": card_data or None,
                "siblings": [{"rfilename": p} for p in sorted(files)],
            },
        )
        return 200

    def _resolve(self, method, repo_type, repo_id, revision, filename) -> int:
        state = self.hub.state
        with state.lock:
            repo = state.repo(repo_type, repo_id, self._authorized())
            oid = state.resolve(repo, revision)
            key = state.commits[oid]["files"].get(filename)
            if key is None:
                raise HubError(404, f"Entry not found: {filename}", "EntryNotFound", {"X-Repo-Commit": oid})
            meta = state.blobs[key]
        headers = {"X-Repo-Commit": oid, "ETag": f'"{meta["git_sha1"]}"', "Accept-Ranges": "bytes"}
        if method == "HEAD":
            self._send(200, b"", headers, "application/octet-stream", head=True, length=meta["size"])
            return 200
        data = state.read_blob(key)
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data) and len(data):
                raise HubError(416, "range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
            part = data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(part) - 1}/{len(data)}"
            self._send(206, part, headers, "application/octet-stream")
            return 206
        self._send(200, data, headers, "application/octet-stream")
        return 200


class LoopbackHub:
    """Start with ``LoopbackHub(...).start()`` (or ``with LoopbackHub() as hub``); ``hub.endpoint`` is the
    HF_ENDPOINT; ``hub.requests`` logs every call; ``stop()`` shuts it down and deletes its files."""

    def __init__(
        self,
        token: str | None = None,
        user: str = "test-user",
        max_request_bytes: int = 64 << 20,
        max_total_bytes: int = 256 << 20,
        max_repos: int = 100,
        max_files: int = 1000,
        max_log: int = 10_000,
        lifetime_s: float = 1800,
    ):
        self.token, self.user = token, user
        self.max_request_bytes, self.lifetime_s = max_request_bytes, lifetime_s
        self._root = Path(tempfile.mkdtemp(prefix="loopback-hub-"))
        self.state = HubState(self._root, max_total_bytes, max_repos, max_files)
        self.requests: collections.deque = collections.deque(maxlen=max_log)
        self._server = None
        self._thread = None
        self._timer = None
        self.endpoint = None

    def start(self) -> "LoopbackHub":
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="loopback-hub", daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)  # never outlive a stuck test session
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()
            server.server_close()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- for assertions ---
    def calls(self, method: str | None = None, contains: str = "") -> list[dict]:
        with self.state.lock:
            return [r for r in self.requests if (method is None or r["method"] == method) and contains in r["path"]]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The files of ``repo_id`` at ``revision`` as stored (path -> bytes)."""
        with self.state.lock:
            repo = self.state.repos[(repo_type, repo_id)]
            files = self.state.commits[self.state.resolve(repo, revision)]["files"]
            return {path: self.state.read_blob(key) for path, key in files.items()}

    def repo(self, repo_id: str, repo_type: str = "model") -> dict:
        with self.state.lock:
            return dict(self.state.repos[(repo_type, repo_id)])
