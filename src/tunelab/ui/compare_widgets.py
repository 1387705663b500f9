"""Widgets and charts for the Compare page; all state comes from report folders on disk."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tunelab import jobs
from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.evals import cost, evaluate
from tunelab.evals.evaluate import HIGHER_IS_BETTER
from tunelab.ui import charts as ch
from tunelab.ui import live, verbatim
from tunelab.ui import stats_widgets as sw

# The page's pieces in their own modules, under the names the pages use.
from tunelab.ui.compare_loop import loop_panel  # noqa: F401  (the page's names)
from tunelab.ui.compare_run import run_report  # noqa: F401
from tunelab.ui.compare_tables import LABELS, _labels, _metrics_frame, _row_headers, progress  # noqa: F401
from tunelab.ui.i18n import t, t_error

SORTS = ("disagreement (ROUGE-L spread)", "dataset order", "lowest mean ROUGE-L")


def model_picker() -> list[str]:
    """2-4 candidates from the registry and finished runs; key compare.models."""
    cands = evaluate.candidate_models()
    labels = {c["name"]: c["label"] for c in cands}
    st.session_state.setdefault("compare.models", [c["name"] for c in cands if c["kind"] != "run"][:2])
    return st.multiselect(t("Models (2–4)"), list(labels), format_func=lambda n: labels.get(n, n),
                          max_selections=evaluate.MAX_MODELS, key="compare.models",
                          help=t("Shipped and added models, endpoints, and fine-tuned runs (base + adapter)."))


def data_picker() -> tuple[str | None, int | None]:
    """A dataset (default: one ending in -test) and one of its versions; keys compare.data / compare.version."""
    names = [d["name"] for d in store.list_datasets()]
    if not names:
        st.warning(t("No datasets yet: import one on the Data page and split off a test set."))
        return None, None
    if st.session_state.get("compare.data") not in names:
        st.session_state["compare.data"] = next((n for n in names if n.endswith("-test")), names[0])
    name = st.selectbox(t("Test data"), names, key="compare.data",
                        help=t("Each record's output is the reference answer. A held-out -test split is best."))
    versions = [v["version"] for v in reversed(store.manifest(name)["versions"])]
    if st.session_state.get("compare.version") not in versions:
        st.session_state["compare.version"] = store.resolve_version(name)
    version = st.selectbox(t("Version"), versions, key="compare.version")
    return name, version


@st.cache_data(max_entries=64, show_spinner=False)
def _estimate(model: str) -> dict:
    return cost.estimate(model)


def cost_table(models: list[str], key: str = "compare.cost") -> None:
    """Size and estimated memory per candidate (a config-based estimate, stated as such)."""
    rows = []
    for m in models:
        try:
            rows.append(cost.table_row(_estimate(m)))
        except Exception as exc:  # one unreadable model must not hide the others' rows
            rows.append({"model": m, "params": t("n/a ({reason})", reason=t_error(str(exc)))})
    if rows:
        frame = pd.DataFrame(rows)
        headers = {"model": t("Model"), "params": t("Parameters"), "disk": t("Disk")}
        for col in frame.columns:  # "run fp32", "tune lora", ...: the use, then the precision or method
            use, _, how = col.partition(" ")
            if use in ("run", "tune") and how:
                headers[col] = t("run {how}", how=how) if use == "run" else t("tune {how}", how=how)
        st.dataframe(frame, hide_index=True, width="stretch", key=key, column_config=headers)
        st.caption(t("Estimated from config.json: run = weights + 2k-token KV cache; tune full = 16 bytes/param "
                     "(fp32 weights, grads, AdamW) + activations (seq 512, batch 1); LoRA/QLoRA = bf16/4-bit "
                     "frozen weights + r=8 adapter on q,v with its AdamW states. Real use adds framework overhead."))


def report_picker() -> str | None:
    """Pick a report to show; key compare.report, mirrored in the URL as ?report=ID.

    The choice: this session's, else the link's ?report=, else the newest (so a refresh re-attaches to a
    running one). Labels are read from the report folders on every run, and while any listed report
    is queued or running a fragment polls them and reruns the page as soon as one changes status.
    """
    reports = evaluate.list_reports()
    if not reports:
        return None
    ids = [r["id"] for r in reports]
    info = {r["id"]: r for r in reports}
    live.choose("report", "compare.report", ids, ids[0])
    labels = {i: _report_label(info[i]) for i in ids}  # built in the run: AppTest calls format_func outside it
    picked = st.selectbox(t("Report"), ids, key="compare.report", format_func=labels.get)
    live.remember("report", picked)
    live.watch(evaluate.KIND, {r["id"]: r["status"] for r in reports}, key="compare.watch")
    return picked


def _report_label(r: dict) -> str:
    """A report's line in the picker; a run's before/after report is named after its run."""
    if r.get("run"):
        return t("{id} · {status} · before/after of run {run} on {data}", id=r["id"],
                 status=t(r["status"] or "queued"), run=r["run"], data=r["data"])
    return t("{id} · {status} · {models} on {data}", id=r["id"], status=t(r["status"] or "queued"),
             models=", ".join(r["models"] or []), data=r["data"])


def _ask_delete(report_id: str | None) -> None:
    st.session_state["compare.confirm_delete"] = report_id


def _delete(report_id: str) -> None:
    st.session_state["compare.confirm_delete"] = None
    try:
        evaluate.delete_report(report_id)
    except TuneLabError as exc:  # it started running meanwhile, or another tab removed it
        st.session_state["compare.delete_error"] = str(exc)
        return
    st.session_state["compare.deleted"] = report_id
    st.session_state.pop("compare.report", None)  # the picker falls back to the newest report


def delete_panel(report_id: str, status: str | None) -> None:
    """Delete the shown report after a confirmation; refused (button disabled) while it is queued or running."""
    if st.session_state.get("compare.confirm_delete") == report_id:
        st.warning(t("Delete report {id} and every answer in it? This cannot be undone.", id=report_id),
                   icon=":material/delete:")
        c1, c2, _ = st.columns([1, 1, 4])
        c1.button(t("Yes, delete"), key="compare.delete_yes", type="primary", on_click=_delete, args=(report_id,))
        c2.button(t("Cancel"), key="compare.delete_no", on_click=_ask_delete, args=(None,))
        return
    active = status in jobs.ACTIVE
    st.button(t("Delete report"), key="compare.delete", icon=":material/delete:", disabled=active,
              on_click=_ask_delete, args=(report_id,),
              help=t("Stop it first: a queued or running report cannot be deleted.") if active else
              t("Removes the report's folder: answers, metrics and judge verdicts."))


def show_delete_result() -> None:
    """What the last delete did (callbacks run before the page draws)."""
    gone = st.session_state.pop("compare.deleted", None)
    if gone:
        st.success(t("Deleted report {id}.", id=gone), icon=":material/check_circle:")
    error = st.session_state.pop("compare.delete_error", None)
    if error:
        st.error(t_error(error))


def launch(models: list[str], data: str, version: int | None, limit: int, max_new_tokens: int,
           judge: str = "", judge_prompt: str | None = None) -> str:
    """Start a comparison in the background (judged afterwards when a judge is given) and select its report."""
    from tunelab.evals import judge as judging

    if judge:
        judging.check_prompt(judge_prompt or judging.DEFAULT_PROMPT)  # before a report folder exists
    rid = evaluate.create_report(evaluate.EvalConfig(models=models, data=data, version=version, limit=limit,
                                                     max_new_tokens=max_new_tokens))
    if judge:
        judging.configure(rid, judge, judge_prompt)
    evaluate.launch_report(rid)
    st.session_state["compare.report"] = rid
    return rid


def report_params(doc: dict) -> dict[str, int | None]:
    """Parameter count of each of a report's models (None for one removed since, or unreadable)."""
    params = {}
    for m in doc["models"]:
        try:
            params[m["name"]] = _estimate(m["name"])["params"]
        except Exception:  # a model removed since the report: shown without a size
            params[m["name"]] = None
    return params


def metrics_table(doc: dict, params: dict[str, int | None] | None = None) -> None:
    """One row per model with its size; the best value of a column highlighted only when it really differs."""
    frame = sw.interval_columns(_metrics_frame(doc["models"], params), doc["models"])
    names = list(frame["name"])
    metric_of = {label: k for k, label in _labels().items()}  # header -> metric key
    best = sw.significant_best(doc, {k: ch.winners(doc["models"], k) for k in HIGHER_IS_BETTER})

    def highlight(col: pd.Series) -> list[str]:
        won = best.get(metric_of.get(col.name)) or set()
        return ["background-color: rgba(46,160,67,.28); font-weight: bold" if n in won else "" for n in names]

    formats = {_labels()[k]: f"{{:.{ch.METRICS[k][2]}f}}" for k in HIGHER_IS_BETTER}
    st.dataframe(frame.style.apply(highlight).format(formats, na_rep="n/a"), hide_index=True,
                 width="stretch", key="compare.table", column_config=_row_headers())
    st.caption(t("Best per column in green: quality only where a paired test says the best model beats every other "
                 "(Holm-adjusted p < 0.05), speed and memory where they differ (lower is better for latency and "
                 "memory). Intervals are 95 %. ROUGE-L and exact match are means over examples, in percent; BLEU is "
                 "corpus BLEU on 0–100; latency is the time until an answer's batch was done."))


def charts(doc: dict, params: dict[str, int | None] | None = None) -> None:
    """The metric panels (legend: one colour per model) and quality against speed."""
    st.plotly_chart(ch.metric_bars(doc["models"]), key="compare.bars")
    st.plotly_chart(ch.quality_speed(doc["models"], params if params is not None else report_params(doc)),
                    key="compare.scatter")


def sorted_examples(doc: dict, order: str) -> list[dict]:
    """Examples in the chosen order: biggest ROUGE-L spread first, dataset order, or hardest first."""
    exs = list(doc["examples"])
    if order == SORTS[0]:
        return sorted(exs, key=lambda e: -e["spread"])
    if order == SORTS[2]:
        return sorted(exs, key=lambda e: sum(o["rouge_l"] for o in e["outputs"].values()) / max(len(e["outputs"]), 1))
    return exs


def examples_view(doc: dict) -> None:
    """Per-example table (prompt, reference, each model's answer and ROUGE-L %) and one example with a column
    per model (answers wrap instead of running into each other)."""
    order = st.selectbox(t("Sort examples by"), SORTS, key="compare.sort", format_func={s: t(s) for s in SORTS}.get)
    exs = sorted_examples(doc, order)
    names = [m["name"] for m in doc["models"]]
    rouge = ch.metric_name("rouge_l")
    rows = []
    for e in exs:
        row = {"#": e["index"], "spread": round(e["spread"] * 100, 1), "prompt": e["prompt"],
               "reference": e["reference"]}
        for n in names:
            o = e["outputs"].get(n, {})
            row[f"{n}"] = o.get("output")
            row[f"{n} · {rouge}"] = None if o.get("rouge_l") is None else round(o["rouge_l"] * 100, 1)
        rows.append(row)
    text_cols = {n: st.column_config.TextColumn(n, width="medium") for n in names}
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="compare.examples",
                 column_config={"spread": st.column_config.NumberColumn(t("Spread (ROUGE-L points)"), format="%.1f"),
                                "prompt": st.column_config.TextColumn(t("Prompt"), width="medium"),
                                "reference": st.column_config.TextColumn(t("Reference"), width="medium"),
                                **text_cols})
    if not exs:
        return
    short = {e["index"]: " ".join(e["prompt"].split())[:70] for e in exs}
    pick = st.selectbox(t("Side by side"), [e["index"] for e in exs], key="compare.example",
                        format_func=lambda i: f"#{i} · {short.get(i, '')}")
    ex = doc["examples"][pick]
    st.markdown(t("**Prompt**"))
    st.code(ex["prompt"], language=None, wrap_lines=True)
    st.table(pd.DataFrame(side_by_side(ex, names)).set_index(t("Model")))


def side_by_side(ex: dict, names: list[str]) -> list[dict]:
    """One row per answer (the reference first, every text verbatim: st.table renders Markdown), with its scores."""
    rows = [{t("Model"): t("Reference"), t("Answer"): verbatim.md(ex["reference"]), ch.metric_name("rouge_l"): "",
             t("Exact match"): ""}]
    for n in names:
        o = ex["outputs"].get(n)
        if o is None:
            rows.append({t("Model"): n, t("Answer"): t("not evaluated yet"), ch.metric_name("rouge_l"): "",
                         t("Exact match"): ""})
            continue
        rows.append({t("Model"): n, t("Answer"): verbatim.md(o["output"]), ch.metric_name("rouge_l"):
                     f"{o['rouge_l'] * 100:.1f}", t("Exact match"): "✓" if o["exact_match"] else "✗"})
    return rows


def before_after(doc: dict) -> None:
    """A fine-tuned run next to its base model (from this report or the newest one on the same data)."""
    pairs = evaluate.before_after(doc)
    if not pairs:
        return
    st.subheader(t("Before / after fine-tuning"))
    rows = []
    for p in pairs:
        for before, label, entry in ((True, t("before: {model}", model=p["base"]), p["before"]),
                                     (False, t("after: {model}", model=p["run"]), p["after"])):
            rows.append({"model": label, **{_labels()[k]: ch.shown(entry or {}, k) for k in HIGHER_IS_BETTER},
                         "report": p["base_report"] if before else doc["report"]})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="compare.before_after",
                 column_config={"model": t("Model"), "report": t("Report")})
    missing = [p["base"] for p in pairs if p["before"] is None]
    if missing:
        st.caption(t("No finished report of {models} on this dataset yet: add it to a comparison.",
                     models=", ".join(missing)))


def winner(doc: dict) -> None:
    """Pick the model to fine-tune and carry it to the Train page."""
    run_ids = {j["id"] for j in jobs.list_jobs("runs")}  # a fine-tuned run is not a base model to train from
    names = [m["name"] for m in doc["models"] if m["examples"] and m["name"] not in run_ids]
    if not names:
        return
    best = sw.winner(doc) if sw.winner(doc) in names else names[0]  # a winner only when significantly better
    if st.session_state.get("compare.pick") not in names:
        st.session_state["compare.pick"] = best
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    pick = c1.selectbox(sw.winner_label(doc), names, key="compare.pick", help=t("Defaults to the verdict's winner."))
    if c2.button(t("Use as base model"), key="compare.use", type="primary", icon=":material/check:"):
        st.session_state["compare.winner"] = pick
        st.session_state["train.model"] = pick
    if st.session_state.get("compare.winner"):
        st.success(t("Base model for training: {model}", model=st.session_state["compare.winner"]))
        st.page_link("pages/train.py", label=t("Go to Train"), icon=":material/model_training:")


def downloads(doc: dict) -> None:
    c1, c2 = st.columns(2)
    c1.download_button(t("Download CSV"), evaluate.export_text(doc, "csv"), f"{doc['report']}.csv", "text/csv",
                       key="compare.download_csv")
    c2.download_button(t("Download JSON"), evaluate.export_text(doc, "json"), f"{doc['report']}.json",
                       "application/json", key="compare.download_json")


# ---------------------------------------------------------------- LLM-as-judge (Compare page)

def judge_fields() -> tuple[str, str]:
    """Optional judge for a new comparison: endpoint and editable prompt; keys compare.judge, compare.judge_prompt."""
    from tunelab.evals import judge

    st.session_state.setdefault("compare.judge_prompt", judge.DEFAULT_PROMPT)
    endpoint = st.text_input(t("Judge (optional)"), key="compare.judge", placeholder="openai:http://127.0.0.1:8000/v1",
                             help=t("An OpenAI-compatible endpoint that reads both answers and picks the better "
                                    "one, for tasks where ROUGE says little. Empty: no judge."))
    if endpoint.strip():
        st.text_area(t("Judge prompt"), key="compare.judge_prompt", height=220,
                     help=t("Variables: {prompt} {reference} {answer_a} {answer_b}. Stored with the report."))
    return endpoint.strip(), st.session_state["compare.judge_prompt"]
