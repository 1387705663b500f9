"""A stand-in Hugging Face Hub on 127.0.0.1 for tests: the requests the real `huggingface_hub` client makes.

Serves a folder of repos (`ROOT/ORG/NAME/...`, each the `main` revision) with:
  GET  /api/models?search=&pipeline_tag=&sort=downloads&limit=&num_parameters=max:N
                                                the search (`HfApi.list_models`): ids holding the words,
                                                downloads / likes from `popularity`, safetensors parameter
                                                counts read from the weights' own headers
  GET  /api/models/ORG/NAME[/revision/REV]      model info (id, sha, siblings, cardData, gated)
  GET  /api/models/ORG/NAME/tree/REV[/PATH]     the recursive file listing (sizes, lfs sha256)
  HEAD /ORG/NAME/resolve/REV/PATH               ETag / X-Repo-Commit / X-Linked-Size / X-Linked-Etag
  GET  /ORG/NAME/resolve/REV/PATH               the bytes, honouring `Range: bytes=N-[M]`
Errors carry the Hub's `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo), which
the client turns into its typed errors. A repo listed in `gated` answers its files with 401 without a
token and 403 with a token other than `token`. Every GET of a file is counted in `gets[(repo, path)]`;
`bytes_per_s` slows the weights down so that a progress bar has time to show.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf")


def _sha(data: bytes, algo: str = "sha256") -> str:
    return hashlib.new(algo, data).hexdigest()


class StandInHub:
    """`with StandInHub(root, gated={"org/x"}, token="hf_x") as hub:` then HF_ENDPOINT=hub.url."""

    def __init__(self, root: Path, gated: set[str] | None = None, token: str = "hf_test_token",
                 licenses: dict[str, str] | None = None, bytes_per_s: float | None = None,
                 popularity: dict[str, tuple[int, int]] | None = None):
        self.root = Path(root)
        self.bytes_per_s = bytes_per_s  # weights sent at this rate: a download a browser can watch
        self.gated = set(gated or ())
        self.token = token
        self.licenses = licenses or {}
        self.popularity = popularity or {}  # repo -> (downloads, likes) for the search listing
        self.searches: list[dict] = []  # the query parameters of every search
        self.gets: Counter = Counter()
        self.requests: list[tuple[str, str]] = []
        self.ranges: list[tuple[str, str, str]] = []  # (repo, path, Range header) of every file GET
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StandInHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the repos ---------------------------------------------------------------------------------------
    def files(self, repo: str) -> dict[str, Path]:
        base = self.root / repo
        return {p.relative_to(base).as_posix(): p for p in sorted(base.rglob("*")) if p.is_file()}

    def commit(self, repo: str) -> str:
        """The repo's commit: a sha1 over its paths and contents (changes when a file changes)."""
        h = hashlib.sha1()
        for rel, p in self.files(repo).items():
            h.update(rel.encode() + b"\0" + _sha(p.read_bytes()).encode())
        return h.hexdigest()

    def repos(self) -> list[str]:
        return sorted(f"{o.name}/{n.name}" for o in self.root.iterdir() if o.is_dir() for n in o.iterdir() if n.is_dir())

    def safetensors(self, repo: str) -> dict | None:
        """{"parameters": {dtype: count}, "total"} from the repo's .safetensors headers (None without any)."""
        counts: Counter = Counter()
        for rel, p in self.files(repo).items():
            if not rel.endswith(".safetensors"):
                continue
            with open(p, "rb") as f:
                header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
            for name, t in header.items():
                if name != "__metadata__":
                    n = 1
                    for d in t["shape"]:
                        n *= d
                    counts[t["dtype"]] += n
        return {"parameters": dict(counts), "total": sum(counts.values())} if counts else None

    def search(self, query: dict[str, list[str]]) -> list[dict]:
        words = (query.get("search") or [""])[0].lower()
        cap = (query.get("num_parameters") or [""])[0]
        limit = int((query.get("limit") or ["1000"])[0])
        out = []
        for repo in self.repos():
            st = self.safetensors(repo)
            if words and words not in repo.lower():
                continue
            if cap.startswith("max:") and (st is None or st["total"] > float(cap[4:])):
                continue
            downloads, likes = self.popularity.get(repo, (0, 0))
            out.append({"_id": self.commit(repo)[:24], "id": repo, "modelId": repo, "downloads": downloads,
                        "likes": likes, "pipeline_tag": "text-generation", "safetensors": st})
        if (query.get("sort") or [""])[0] == "downloads":
            out.sort(key=lambda m: -m["downloads"])
        return out[:limit]

    def weight_gets(self, repo: str) -> int:
        return sum(n for (r, path), n in self.gets.items() if r == repo and path.endswith(".safetensors"))

    # --- HTTP --------------------------------------------------------------------------------------------
    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet test output
                pass

            def do_HEAD(self):
                self._route(head=True)

            def do_GET(self):
                self._route(head=False)

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str, head: bool = False):
                body = json.dumps({"error": message}).encode()
                self._send(status, body, {"Content-Type": "application/json", "X-Error-Code": code,
                                          "X-Error-Message": message}, head)

            def _json(self, obj, head: bool = False):
                self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"}, head)

            def _repo(self, org: str, name: str, head: bool):
                repo = f"{org}/{name}"
                if not (hub.root / repo).is_dir():
                    self._error(401, "RepoNotFound", "Repository not found", head)
                    return None
                return repo

            def _revision(self, repo: str, rev: str, head: bool):
                sha = hub.commit(repo)
                if rev not in ("main", sha):
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
                    return None
                return sha

            def _authorised(self, repo: str, head: bool) -> bool:
                if repo not in hub.gated:
                    return True
                auth = self.headers.get("Authorization", "")
                if not auth:
                    self._error(401, "GatedRepo", "Access to model is restricted. You must have access to it "
                                "and be authenticated to access it. Please log in.", head)
                    return False
                if auth != f"Bearer {hub.token}":
                    self._error(403, "GatedRepo", "Access to model is restricted and you are not in the "
                                "authorized list.", head)
                    return False
                return True

            def _route(self, head: bool):
                url = urlsplit(self.path)
                path = unquote(url.path)
                with hub._lock:
                    hub.requests.append(("HEAD" if head else "GET", path))
                if path == "/api/models":
                    query = parse_qs(url.query)
                    hub.searches.append(query)
                    return self._json(hub.search(query), head)
                m = re.fullmatch(r"/api/models/([^/]+)/([^/]+)(?:/revision/(.+))?", path)
                if m:
                    return self._info(m.group(1), m.group(2), m.group(3) or "main", head)
                m = re.fullmatch(r"/api/models/([^/]+)/([^/]+)/tree/([^/]+)(?:/(.*))?", path)
                if m:
                    return self._tree(m.group(1), m.group(2), m.group(3), m.group(4) or "", head)
                m = re.fullmatch(r"/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)", path)
                if m:
                    return self._resolve(m.group(1), m.group(2), m.group(3), m.group(4), head)
                self._error(404, "NotFound", f"no route {path}", head)

            def _info(self, org, name, rev, head):
                if (repo := self._repo(org, name, head)) is None or (sha := self._revision(repo, rev, head)) is None:
                    return
                files = hub.files(repo)
                card = {"license": hub.licenses[repo]} if repo in hub.licenses else {}
                self._json({"_id": sha[:24], "id": repo, "modelId": repo, "sha": sha, "private": False,
                            "gated": "manual" if repo in hub.gated else False, "disabled": False,
                            "pipeline_tag": "text-generation", "library_name": "transformers", "downloads": 0,
                            "likes": 0, "tags": ["transformers", "safetensors"] + (
                                [f"license:{card['license']}"] if card else []),
                            "cardData": card, "siblings": [{"rfilename": f} for f in files]}, head)

            def _tree(self, org, name, rev, sub, head):
                if (repo := self._repo(org, name, head)) is None or (self._revision(repo, rev, head)) is None:
                    return
                entries = []
                for rel, p in hub.files(repo).items():
                    if sub and not rel.startswith(sub.rstrip("/") + "/"):
                        continue
                    data = p.read_bytes()
                    entry = {"type": "file", "oid": _sha(b"blob %d\0" % len(data) + data, "sha1"),
                             "size": len(data), "path": rel}
                    if rel.endswith(LFS_SUFFIXES):
                        entry["lfs"] = {"oid": _sha(data), "size": len(data), "pointerSize": 134}
                    entries.append(entry)
                self._json(entries, head)

            def _resolve(self, org, name, rev, rel, head):
                if (repo := self._repo(org, name, head)) is None or (sha := self._revision(repo, rev, head)) is None:
                    return
                if not self._authorised(repo, head):
                    return
                p = hub.files(repo).get(rel)
                if p is None:
                    self._error(404, "EntryNotFound", f"{rel} does not exist on {rev}", head)
                    return
                data = p.read_bytes()
                lfs = rel.endswith(LFS_SUFFIXES)
                etag = _sha(data) if lfs else _sha(b"blob %d\0" % len(data) + data, "sha1")
                headers = {"ETag": f'"{etag}"', "X-Repo-Commit": sha, "Accept-Ranges": "bytes",
                           "Content-Type": "application/octet-stream"}
                if lfs:
                    headers.update({"X-Linked-Size": len(data), "X-Linked-Etag": f'"{etag}"'})
                if head:
                    headers["Content-Length"] = len(data)
                    self._send(200, b"", headers, head=True)
                    return
                with hub._lock:
                    hub.gets[(repo, rel)] += 1
                    hub.ranges.append((repo, rel, self.headers.get("Range", "")))
                start, end = 0, len(data) - 1
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if m:
                    start, end = int(m.group(1)), int(m.group(2) or end)
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                body = data[start:end + 1]
                if not (lfs and hub.bytes_per_s):
                    self._send(206 if m else 200, body, headers)
                    return
                self._send(206 if m else 200, b"", dict(headers, **{"Content-Length": len(body)}), head=True)
                step = 64 * 1024
                try:
                    for i in range(0, len(body), step):
                        self.wfile.write(body[i:i + step])
                        time.sleep(step / hub.bytes_per_s)
                except (BrokenPipeError, ConnectionResetError):  # the client was killed mid-download
                    pass

        return Handler


def make_repo(root: Path, repo: str, builder=None, **build_kwargs) -> Path:
    """A tiny random model saved with save_pretrained into ROOT/ORG/NAME (tests/tiny_model.py by default)."""
    if builder is None:
        import tiny_model

        builder = tiny_model.build
    target = Path(root) / repo
    builder(target, **build_kwargs)
    return target
