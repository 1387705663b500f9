"""Adding a Hub model as a background job (the Models page): `tunelab models add NAME ID --job ID`.

The page never downloads in its own process: it launches the CLI through jobs.launch, and reads the
job's status.json (bytes done / total) to draw the progress bar, so a refresh or a second tab
re-attaches and a closed browser does not stop the download.
"""

from __future__ import annotations

import time

from tunelab import jobs, workspace
from tunelab.errors import TuneLabError

JOB_KIND = "downloads"


def start(name: str, hub_id: str, revision: str = "") -> str:
    """Launch the download of hub_id as registry model name; returns the job id."""
    from tunelab.models import hub
    from tunelab.models.registry import SHIPPED

    if not hub.parse(hub_id.strip()):
        raise TuneLabError(f"{hub_id!r} is not a Hub id (ORG/NAME or ORG/NAME@REVISION)")
    workspace.validate_name(name, "model name")
    if name in SHIPPED:
        raise TuneLabError(f"{name} is a shipped model name; choose another")
    job_id = jobs.new_id("download")
    jobs.write_status(jobs.job_dir(JOB_KIND, job_id), status="queued", created=time.time(), model=name,
                      hub_id=hub_id.strip(), revision=revision or "", done_bytes=0, total_bytes=None)
    argv = ["models", "add", name, hub_id.strip(), "--job", job_id] + (["--revision", revision] if revision else [])
    jobs.launch(JOB_KIND, job_id, argv, env={"HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    return job_id


def run_job(job_id: str, work) -> dict:
    """Run work(on_progress) as the download job: its bytes go to status.json as they arrive."""
    last = [0.0]
    with jobs.running(JOB_KIND, job_id) as job:

        def on_progress(done: int, total: int) -> None:
            if time.monotonic() - last[0] > 0.25 or done >= total:
                last[0] = time.monotonic()
                job.update(done_bytes=done, total_bytes=total, fraction=done / total if total else 1.0,
                           progress=f"{done / 1e6:.1f} / {total / 1e6:.1f} MB")

        entry = work(on_progress)
        job.update(entry={k: entry.get(k) for k in ("name", "hub_id", "revision")}, fraction=1.0)
    if job.status == "stopped":
        raise TuneLabError(f"download {job_id} was stopped")
    return entry


def list_jobs() -> list[dict]:
    """Download jobs, newest first."""
    return jobs.list_jobs(JOB_KIND)
