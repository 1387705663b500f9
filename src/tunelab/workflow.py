"""Where a user stands in the five-step workflow, read from the workspace (for the Home page)."""

from __future__ import annotations

from dataclasses import dataclass

from tunelab import jobs
from tunelab.data import store


@dataclass
class Step:
    """One step of the workflow and whether the workspace shows it done."""

    key: str
    title: str
    page: str
    done: bool
    detail: str


def _jobs(kind: str) -> list[dict]:
    return [j for j in jobs.list_jobs(kind) if j.get("status") != "failed"]


def steps() -> list[Step]:
    """The five steps with their state: data, test split, generations, comparison, training."""
    datasets = store.list_datasets()
    tests = [d["name"] for d in datasets if d["name"].endswith("-test")]
    gens, reports, runs = _jobs("generations"), _jobs("reports"), _jobs("runs")
    n = len(datasets)
    return [
        Step("data", "Import data", "pages/data.py", n > 0,
             f"{n} dataset(s), {sum(d['records'] for d in datasets)} records" if n else "no dataset yet"),
        Step("split", "Split off a test set", "pages/data.py", bool(tests),
             ", ".join(tests) if tests else "no NAME-test dataset yet"),
        Step("generate", "Generate more examples (optional)", "pages/generate.py", bool(gens),
             f"{len(gens)} generation batch(es)" if gens else "no generated batch yet"),
        Step("compare", "Compare base models", "pages/compare.py", bool(reports),
             f"{len(reports)} comparison report(s)" if reports else "no comparison report yet"),
        Step("train", "Train and use your model", "pages/train.py", bool(runs),
             f"{len(runs)} training run(s)" if runs else "no training run yet"),
    ]


def next_step(state: list[Step]) -> Step | None:
    """The first required step not done yet (generation is optional)."""
    return next((s for s in state if not s.done and s.key != "generate"), None)


def warnings(state: list[Step]) -> list[str]:
    """Steps done out of order, each as one sentence a beginner can act on."""
    done = {s.key: s.done for s in state}
    out = []
    if done["data"] and not done["split"]:
        out.append("No test split yet: Compare and training evaluation have no held-out records "
                   "to score on. Use Split on the Data page.")
    if done["compare"] and not done["split"]:
        out.append("A comparison exists but no test split: its scores may come from records the "
                   "model will also train on.")
    if done["train"] and not done["compare"]:
        out.append("You trained without comparing base models first, so there is no baseline to "
                   "tell whether training helped.")
    return out
