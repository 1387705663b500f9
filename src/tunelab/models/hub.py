"""Hugging Face Hub models by id (`ORG/NAME` or `ORG/NAME@REVISION`): fetched once with huggingface_hub.

`fetch` checks the repo before downloading anything (it exists, the revision exists, the token may read it,
its files fit on the disk), then `snapshot_download`s the safetensors weights plus config and tokenizer files
into the Hugging Face cache (HF_HOME; resumed from the partial file after an interruption). A cached
snapshot is used without asking the Hub again. Every failure is one TuneLabError line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
from pathlib import Path

from tunelab import workspace
from tunelab.errors import TuneLabError

HUB_ID_RE = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[\w][\w./-]*))?$")
DEFAULT_ENDPOINT = "https://huggingface.co"
# Weights only as safetensors (a pickle can run code when loaded); no *.py: remote code is never run.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
TOKEN_HELP = "set HF_TOKEN or save a token on the Models page (kept in the workspace, mode 0600)"


def parse(model: str) -> tuple[str, str | None] | None:
    """(repo, revision or None) when model looks like a Hub id and is not a local path, else None."""
    m = HUB_ID_RE.match(model or "")
    if not m or Path(model).expanduser().exists():
        return None
    return m.group("repo"), m.group("rev")


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def cache_dir() -> Path:
    """huggingface_hub's cache, read from the environment now (the library reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _token_file() -> Path:
    return workspace.subdir("models") / "hf_token"


def token() -> str | None:
    """HF_TOKEN if set, else the token saved on the Models page; never logged or printed."""
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    f = _token_file()
    return f.read_text().strip() or None if f.is_file() else None


def save_token(value: str) -> None:
    """Keep a Hub token in the workspace, readable by its owner only (0600 from creation, no umask window)."""
    value = value.strip()
    if not value:
        raise TuneLabError("the token is empty")
    f = _token_file()
    fd = os.open(f.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    os.chmod(f.with_suffix(".tmp"), 0o600)
    os.replace(f.with_suffix(".tmp"), f)


def token_saved() -> bool:
    return _token_file().is_file()


def _sync_offline_flag() -> None:
    # huggingface_hub reads HF_HUB_OFFLINE once at import; a long-lived process (the dashboard, a test)
    # may have imported it under another setting, so its flag follows the environment of this call.
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = offline()


def _friendly(exc: Exception, repo: str, revision: str | None) -> TuneLabError:
    """One line for each way the Hub can say no."""
    import httpx2
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    at, kind = endpoint(), type(exc).__name__
    if isinstance(exc, OfflineModeIsEnabled):
        return _offline_error(repo)
    if isinstance(exc, GatedRepoError):
        if exc.response is not None and exc.response.status_code == 403:
            return TuneLabError(f"{repo} is gated and the token given has no access to it: accept its terms on "
                                f"the Hub with that account, or {TOKEN_HELP}")
        return TuneLabError(f"{repo} is gated: accept its terms on the Hub, then {TOKEN_HELP}")
    if isinstance(exc, RevisionNotFoundError):
        return TuneLabError(f"{repo} has no revision {revision!r} on the Hub at {at}")
    if isinstance(exc, RepositoryNotFoundError):
        return TuneLabError(f"no model {repo} on the Hub at {at} (check the id; if it is private, {TOKEN_HELP})")
    if isinstance(exc, (httpx2.ConnectError, httpx2.TimeoutException, httpx2.NetworkError)):
        return TuneLabError(f"cannot reach the Hub at {at} ({kind}); check the network or HF_ENDPOINT")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "an error"
        return TuneLabError(f"the Hub at {at} answered {status} for {repo}")
    first = (str(exc).splitlines() or [""])[0]
    return TuneLabError(f"fetching {repo} failed: {kind}: {first}")


def _offline_error(repo: str) -> TuneLabError:
    return TuneLabError(f"{repo} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 turns downloads off; "
                        f"set HF_HUB_OFFLINE=0 (and HF_ENDPOINT for a mirror) to fetch it")


def describe(folder: str | Path) -> dict:
    """{"architecture", "model_type"} of a model folder, from its config.json ("" when unknown)."""
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        cfg = {}
    return {"architecture": (cfg.get("architectures") or [""])[0], "model_type": cfg.get("model_type", "")}


def _meta_file(repo: str, commit: str) -> Path:
    return cache_dir() / f"models--{repo.replace('/', '--')}" / "tunelab" / f"{commit}.json"


def cached(repo: str, revision: str | None = None) -> dict | None:
    """The cached snapshot of repo@revision ({"path", "commit", "license"}), or None; no network."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo, revision=revision, allow_patterns=ALLOW_PATTERNS, cache_dir=str(cache_dir()),
                                 local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (the library raises several types for it)
        return None
    commit = Path(path).name
    meta = _meta_file(repo, commit)
    license_ = json.loads(meta.read_text()).get("license", "") if meta.is_file() else ""
    return {"repo": repo, "path": path, "commit": commit, "license": license_}


def plan(repo: str, revision: str | None = None) -> dict:
    """Ask the Hub about repo@revision without downloading: commit, license, files to fetch and their bytes."""
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    if offline():
        raise _offline_error(repo)
    _sync_offline_flag()
    api = HfApi(endpoint=endpoint(), token=token())
    try:
        info = api.model_info(repo, revision=revision)
        tree = [f for f in api.list_repo_tree(repo, revision=info.sha, recursive=True) if isinstance(f, RepoFile)]
        files = {f.path: f.size for f in tree}
        lfs = {f.path: f.lfs.sha256 for f in tree if f.lfs is not None}
        wanted = list(filter_repo_objects(files, allow_patterns=ALLOW_PATTERNS))
        if "config.json" in files:  # a gated or private repo says so on its files, not on its listing
            get_hf_file_metadata(hf_hub_url(repo, "config.json", revision=info.sha, endpoint=endpoint()),
                                 token=token())
    except Exception as exc:  # noqa: BLE001 - every Hub failure becomes one line
        raise _friendly(exc, repo, revision) from None
    if "config.json" not in files:
        raise TuneLabError(f"{repo} is not a transformers model (no config.json)")
    if not any(f.endswith(".safetensors") for f in wanted):
        pickled = [f for f in files if f.endswith((".bin", ".pt", ".pth", ".ckpt"))]
        if pickled:
            raise TuneLabError(f"{repo} has no safetensors weights (only {pickled[0]}, a pickle that can run code "
                               f"when loaded); TuneLab loads safetensors only")
        raise TuneLabError(f"{repo} has no safetensors weights")
    card = info.card_data.to_dict() if getattr(info, "card_data", None) else {}
    license_ = card.get("license") or next((t.split(":", 1)[1] for t in (info.tags or []) if t.startswith("license:")), "")
    return {"repo": repo, "commit": info.sha, "license": license_ or "", "files": {f: files[f] for f in wanted},
            "lfs": {f: lfs[f] for f in wanted if f in lfs}, "bytes": sum(files[f] or 0 for f in wanted)}


def _bar(show: bool):
    """A tqdm class for the terminal's byte bar on stderr, shown when stderr is a terminal or
    TUNELAB_PROGRESS=1 (the CLI turns huggingface_hub's own bars off: HF_HUB_DISABLE_PROGRESS_BARS)."""
    from tqdm import tqdm

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.update(disable=not show, file=sys.stderr)
            super().__init__(*args, **kwargs)

    return Bar


def _show_progress() -> bool:
    return sys.stderr.isatty() or os.environ.get("TUNELAB_PROGRESS") == "1"


def _fetch_blob(repo: str, commit: str, path: str, sha256: str, size: int, blobs: Path) -> None:
    """Download one large file into the cache's blobs/<sha256>, continuing a partial one left by an
    interrupted download (an HTTP Range request for the missing bytes), then check its sha256.

    huggingface_hub 2.x writes each download to a fresh per-process temporary file and deletes it on
    failure, so an interrupted download starts again from byte 0; this keeps the partial file under a
    stable name instead. snapshot_download then finds the blob and only links it into the snapshot.
    """
    import hashlib

    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session

    final = blobs / sha256
    if final.exists():
        return
    blobs.mkdir(parents=True, exist_ok=True)
    part = blobs / f"{sha256}.tunelab-part"
    have = part.stat().st_size if part.exists() else 0
    headers = build_hf_headers(token=token())
    if have:
        headers["Range"] = f"bytes={have}-"
    url = hf_hub_url(repo, path, revision=commit, endpoint=endpoint())
    with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=30) as r:
        r.raise_for_status()
        if have and r.status_code != 206:  # the server ignored the Range: start again
            have = 0
        with open(part, "ab" if have else "wb") as out, _bar(_show_progress())(
                total=size, initial=have, unit="B", unit_scale=True, desc=f"{repo}/{path}") as bar:
            for chunk in r.iter_bytes(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    digest = hashlib.sha256()
    with open(part, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        part.unlink()
        raise TuneLabError(f"{repo}/{path} arrived corrupted (sha256 differs); run the command again")
    os.replace(part, final)


def check_disk(need: int, where: Path, repo: str) -> None:
    """One clear line when the download does not fit on the disk holding the cache (5% spare)."""
    where.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where).free
    if need * 1.05 > free:
        need_gib, free_gib = f"{need / 2**30:.2f}", f"{free / 2**30:.2f}"
        raise TuneLabError(f"{repo} needs {need_gib} GiB but only {free_gib} GiB is free in {where}; "
                           f"free some space or point HF_HOME at a larger disk")


def _watch(folder: Path, total: int, on_progress, stop: threading.Event) -> None:
    """Report the bytes in the repo's blob folder (finished and partial files) until stop is set.

    Read from the disk rather than from huggingface_hub's bars, whose layout changes between versions;
    a resumed download starts from the bytes already there.
    """
    while not stop.wait(0.3):
        try:
            done = sum(f.stat().st_size for f in (folder / "blobs").iterdir())
        except OSError:
            done = 0
        on_progress(min(done, total), total)


def fetch(model: str, revision: str | None = None, tqdm_class=None, on_progress=None) -> dict:
    """Download (or find cached) a Hub model; returns {"repo", "path", "commit", "license", "bytes"}.

    Args:
        model: `ORG/NAME` or `ORG/NAME@REVISION`.
        revision: a branch, tag or commit (overrides one given after @).
        tqdm_class: progress bar class for snapshot_download's small files (default: none; the weights'
            byte bar goes to stderr, see _bar).
        on_progress: called with (bytes on disk, bytes to fetch) while downloading (the Models page's bar).
    """
    parsed = parse(model) or (model, None)
    repo, revision = parsed[0], revision or parsed[1]
    if hit := cached(repo, revision):
        return hit
    p = plan(repo, revision)
    check_disk(p["bytes"], cache_dir(), repo)
    from huggingface_hub import snapshot_download

    stop = threading.Event()
    if on_progress:
        folder = cache_dir() / f"models--{repo.replace('/', '--')}"
        threading.Thread(target=_watch, args=(folder, p["bytes"], on_progress, stop), daemon=True).start()
    try:
        blobs = cache_dir() / f"models--{repo.replace('/', '--')}" / "blobs"
        for name, sha in p["lfs"].items():  # the weights, resumable across processes
            _fetch_blob(repo, p["commit"], name, sha, p["files"][name] or 0, blobs)
        # the revision as given (not the commit), so the cache records refs/<branch> for the next lookup
        path = snapshot_download(repo, revision=revision, allow_patterns=ALLOW_PATTERNS, cache_dir=str(cache_dir()),
                                 endpoint=endpoint(), token=token(), tqdm_class=tqdm_class or _bar(False))
    except TuneLabError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _friendly(exc, repo, revision) from None
    finally:
        stop.set()
    if on_progress:
        on_progress(p["bytes"], p["bytes"])
    meta = _meta_file(repo, Path(path).name)
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"license": p["license"], "bytes": p["bytes"]}))
    return {"repo": repo, "path": path, "commit": Path(path).name, "license": p["license"], "bytes": p["bytes"]}
