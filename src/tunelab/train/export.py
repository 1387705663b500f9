"""`tunelab export`: a run's adapter, its weights merged into the base, a GGUF file for llama.cpp, or an Ollama folder.

The job and CLI glue lives here; merging and writing GGUF are the models layer's
(models/convert.py), which the llama.cpp backend uses too without importing `train`.
"""

from __future__ import annotations

import shutil

from tunelab import outputs, workspace
from tunelab.errors import TuneLabError
from tunelab.models import ollama as ollama_model
from tunelab.models.convert import (GGUF_TYPES, check_gguf_type, merged, run_gguf, save_gguf, saved, tokenizer_pre,
                                    write_gguf)

# merged, run_gguf and write_gguf stay importable from here for existing callers.
__all__ = ["FORMATS", "GGUF_TYPES", "export", "list_jobs", "merged", "run_gguf", "run_job", "start", "write_gguf"]

JOB_KIND = "export-jobs"  # the dashboard's export jobs: jobs.job_dir(JOB_KIND, id)
# What the dashboard offers: format -> the `tunelab export` flags and the output's suffix.
# gguf-<type> beyond q8_0 and ollama-q4_k_m need the llamacpp extra (the job fails with one line naming it).
FORMATS = {"adapter": ([], ""), "merged": (["--merge"], ""), "gguf": (["--gguf"], ".gguf"),
           **{f"gguf-{q}": (["--gguf", "--gguf-type", q], ".gguf") for q in GGUF_TYPES if q != "f32"},
           "ollama": (["--ollama", "--gguf-type", "q8_0"], ""), "ollama-q4_k_m": (["--ollama", "--gguf-type", "q4_k_m"], "")}


def start(run_id: str, name: str, fmt: str) -> str:
    """Launch `tunelab export` for a run as a background job (workspace/export-jobs/<id>); returns its id.

    Args:
        run_id: a run with saved weights.
        name: the output's name under the workspace's exports/ (a dataset-style name).
        fmt: one of FORMATS.
    """
    import time

    from tunelab import jobs

    if fmt not in FORMATS:
        raise TuneLabError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    saved(run_id)
    flags, suffix = FORMATS[fmt]
    out = workspace.validate_name(name, "export name") + suffix
    target = outputs.target(out)  # an existing export of that name is refused here, before the job starts
    job_id = jobs.new_id("export")
    jobs.write_status(jobs.job_dir(JOB_KIND, job_id), status="queued", created=time.time(), run=run_id,
                      format=fmt, out=str(target))
    jobs.launch(JOB_KIND, job_id, ["export", run_id, out, *flags, "--job", job_id])
    return job_id


def run_job(job_id: str, work) -> dict:
    """Run work() as the export job job_id (jobs.running): completed with its files, failed or stopped."""
    from tunelab import jobs

    with jobs.running(JOB_KIND, job_id) as job:
        doc = work()
        job.update(files=doc["files"])
    if job.status == "stopped":
        raise TuneLabError(f"export {job_id} was stopped")
    return doc


def list_jobs(run_id: str) -> list[dict]:
    """This run's export jobs, newest first."""
    from tunelab import jobs

    return [j for j in jobs.list_jobs(JOB_KIND) if j.get("run") == run_id]


def export(run_id: str, out: str, merge: bool = False, gguf: bool = False, gguf_type: str = "f32",
           ollama: bool = False, force: bool = False) -> dict:
    """Write a run's result to out.

    Args:
        run_id: a run with a checkpoint (its output.json).
        out: a folder (a .gguf file path is allowed with gguf=True); relative paths go to exports/.
        merge: write the base weights with the adapter merged in (safetensors).
        gguf: write a GGUF file of the merged model.
        gguf_type: "f32" (the same greedy answers as the merged weights), "q8_0" (8-bit blocks: about
            3.7x smaller and faster in llama.cpp, answers may differ slightly), or q4_0, q4_k_m, q5_k_m,
            q6_k (llama.cpp's quantiser: the llamacpp extra).
        ollama: write out/ as an Ollama model folder: model.gguf (of gguf_type) and a Modelfile with
            the chat template, default system prompt and stop tokens.
        force: replace an existing export at out (refused otherwise).
    Returns:
        {"run", "out", "files": [paths written]}.

    OUT goes through tunelab.outputs: never into TuneLab's own folders (another run's adapter/ is
    refused), and written under a temporary name then renamed, never through a hard link.
    """
    d, meta = saved(run_id)
    check_gguf_type(gguf_type)  # a missing llamacpp extra is reported before the slow merge
    target = outputs.target(out, force)
    if target.suffix == ".gguf" and (ollama or merge):
        flag = "ollama" if ollama else "merge"
        raise TuneLabError(f"--{flag} writes a folder: give OUT without .gguf")
    if not merge and not gguf and not ollama:
        src = d / (meta.get("adapter_dir") or meta.get("model_dir"))
        with outputs.staged(target) as tmp:
            shutil.copytree(src, tmp)  # copies: the run's files are hard links to its checkpoint
        return {"run": run_id, "out": str(target), "files": [str(target)]}
    model, tok = merged(run_id)
    modelfile = ollama_model.modelfile(tok) if ollama else None  # an untranslatable template fails before writing
    pre = tokenizer_pre(meta["base"])
    if target.suffix == ".gguf":
        with outputs.staged(target) as tmp:
            save_gguf(model, tok, tmp, name=run_id, pre=pre, qtype=gguf_type)
        return {"run": run_id, "out": str(target), "files": [str(target)]}
    names = []
    with outputs.staged(target) as folder:
        folder.mkdir()
        if merge:
            model.save_pretrained(folder)
            tok.save_pretrained(folder)
            names.append("")
        if gguf:
            save_gguf(model, tok, folder / f"{run_id}.gguf", name=run_id, pre=pre, qtype=gguf_type)
            names.append(f"{run_id}.gguf")
        if ollama:
            save_gguf(model, tok, folder / ollama_model.GGUF_NAME, name=run_id, pre=pre, qtype=gguf_type)
            names += [ollama_model.GGUF_NAME, ollama_model.write(folder, modelfile).name]
    return {"run": run_id, "out": str(target), "files": [str(target / n) if n else str(target) for n in names]}
