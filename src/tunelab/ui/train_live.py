"""The Train page's live run: which run to watch, its charts and status, and its export panel.

What is running is always read from the run folders (tunelab.train.runs), never from session
state, so a refresh or a second tab re-attaches to a run instead of starting or losing one."""

from __future__ import annotations

import shlex

import streamlit as st

from tunelab import jobs
from tunelab.errors import TuneLabError
from tunelab.train import manage, runs
from tunelab.train.diagnose import diagnose
from tunelab.ui.i18n import t, t_error
from tunelab.ui.layout import show_error
from tunelab.ui.train_recipe import show_recipe


def current_run() -> str | None:
    """The run to watch: an active one from disk first, else the one chosen (this tab or ?run=), else the newest."""
    all_runs = runs.list_runs()
    ids = {r["run"] for r in all_runs}
    active = [r["run"] for r in all_runs if r["status"] in jobs.ACTIVE]
    if st.session_state.get("train.run") not in ids and st.query_params.get("run") in ids:
        st.session_state["train.run"] = st.query_params["run"]
    if active:
        return active[-1]  # oldest active = the one training now (newest first order)
    chosen = st.session_state.get("train.run")
    return chosen if chosen in ids else (all_runs[0]["run"] if all_runs else None)


def playground_link(run_id: str, key: str) -> None:
    """A link that opens the Playground on this run (?model=RUN_ID)."""
    with st.container(key=key):
        st.page_link("pages/playground.py", label=t("Open in Playground"), icon=":material/chat:",
                     query_params={"model": run_id})


def smooth(values: list[float | None], weight: float = 0.8) -> list[float | None]:
    """Exponential moving average (TensorBoard's smoothing, debiased) so a noisy loss shows its trend."""
    out, avg, n = [], 0.0, 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        n += 1
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** n))
    return out


def _charts(rows: list[dict]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pref = any(r.get("reward_margin") is not None for r in rows)  # a dpo/orpo/kto run: its rewards too
    titles = (t("loss"), t("learning rate"), t("grad norm"), t("tokens/s"))
    if pref:
        titles += (t("reward margin"), t("reward accuracy"))
    fig = make_subplots(rows=3 if pref else 2, cols=2, subplot_titles=titles)
    steps = [r["step"] for r in rows]
    losses = [r.get("loss") for r in rows]
    fig.add_trace(go.Scatter(x=steps, y=losses, name=t("loss"), mode="lines+markers", opacity=0.35), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=smooth(losses), name=t("loss (smoothed)"), mode="lines",
                             line={"width": 3}), 1, 1)
    ev = [r for r in rows if r.get("eval_loss") is not None]  # 0.0 is a value: test for None only
    if ev:
        fig.add_trace(go.Scatter(x=[r["step"] for r in ev], y=[r["eval_loss"] for r in ev], name=t("eval loss"),
                                 mode="lines+markers"), 1, 1)
    # One line per panel, named by the panel's title: only the loss panel, with several lines, needs a legend.
    fig.add_trace(go.Scatter(x=steps, y=[r.get("learning_rate") for r in rows], name=t("learning rate"),
                             showlegend=False), 1, 2)
    fig.add_trace(go.Scatter(x=steps, y=[r.get("grad_norm") for r in rows], name=t("grad norm"), showlegend=False),
                  2, 1)
    fig.add_trace(go.Scatter(x=steps, y=[r.get("tokens_per_s") for r in rows], name=t("tokens/s"), showlegend=False),
                  2, 2)
    if pref:  # train and eval side by side, like loss and eval loss
        for col, key in ((1, "reward_margin"), (2, "reward_accuracy")):
            label = t(key.replace("_", " "))
            fig.add_trace(go.Scatter(x=steps, y=[r.get(key) for r in rows], name=label, mode="lines+markers"), 3, col)
            ev = [r for r in rows if r.get(f"eval_{key}") is not None]
            if ev:
                fig.add_trace(go.Scatter(x=[r["step"] for r in ev], y=[r[f"eval_{key}"] for r in ev],
                                         name=t("eval {metric}", metric=label), mode="lines+markers"), 3, col)
        fig.update_yaxes(range=[-0.05, 1.05], row=3, col=2)
    fig.update_xaxes(title_text=t("step"))
    fig.update_layout(height=760 if pref else 540, margin=dict(l=10, r=10, t=30, b=10), showlegend=True,
                      legend=dict(orientation="h", yanchor="bottom", y=1.04, x=0))
    return fig


def preference_report(s: dict) -> None:
    """A dpo/orpo/kto run's preference accuracy before and after, from its report summary (evals/auto.py)."""
    pref = s.get("preference_accuracy")
    if not pref:
        return
    if pref.get("error"):
        st.caption(t("No preference accuracy: {reason}", reason=t_error(pref["error"])))
        return
    if pref.get("tuned") is None:
        return
    values = {"after": f"{pref['tuned']:.2f}", "before": f"{pref['base']:.2f}", "n": pref["pairs"]}
    c = st.columns(2)
    c[0].metric(t("preference accuracy before"), values["before"],
                help=t("Share of held-out pairs where the model finds the chosen answer likelier than the rejected one."))
    c[1].metric(t("preference accuracy after"), values["after"], f"{pref['tuned'] - pref['base']:+.2f}")
    if pref.get("beat_base"):
        st.success(t("The tuned model prefers the chosen answer more often than its base "
                     "({after} vs {before} of {n} held-out pairs).", **values))
    else:
        st.warning(t("The tuned model prefers the chosen answer no more often than its base "
                     "({after} vs {before} of {n} held-out pairs).", **values))
    j = s.get("judge")
    if j and j.get("win_rate") is not None:
        st.caption(t("Judge win rate of the tuned model over its base: {rate}", rate=f"{j['win_rate']:.0%}"))


@st.fragment(run_every=2)
def live(run_id: str) -> None:
    """Status, charts, log tail and Stop/Resume of one run, re-read from its folder every 2 s."""
    try:
        st_ = runs.status(run_id)
    except TuneLabError:
        st.info(t("run {run} no longer exists", run=run_id))
        return
    rows = runs.metrics(run_id)
    status, step, total = st_.get("status"), st_.get("step", 0), st_.get("max_steps")
    seen = st.session_state.get("train.live_seen")
    st.session_state["train.live_seen"] = (run_id, status)
    if seen and seen[0] == run_id and seen[1] in jobs.ACTIVE and status not in jobs.ACTIVE:
        st.rerun()  # it just ended: the whole page, so its export panel, report and pickers appear
    st.markdown(t("**{run}** · `{status}` · step {step}/{total} · {method} on `{data}` from `{model}`", run=run_id,
                  status=t(status or "queued"), step=step, total=total or "?", method=st_.get("method"), data=st_.get("data"),
                  model=st_.get("model")))
    lin = runs.lineage(run_id)
    adapter = t(" + adapter of run `{run}`", run=lin["init_adapter"]) if lin.get("init_adapter") else ""
    st.caption(t("lineage: base `{base}`", base=lin["base"]) + adapter
               + t(" · data `{data}` v{version}", data=lin["data"], version=lin.get("data_version")))
    if total:
        st.progress(min(step / total, 1.0))
    if st_.get("truncated"):
        st.caption(t("{n} records were cut at the cutoff length; {dropped} dropped.", n=st_["truncated"],
                     dropped=st_.get("dropped", 0)))
    if st_.get("error"):
        st.error(t_error(st_["error"]))
    b1, b2, _ = st.columns([1, 1, 6])
    if status in jobs.ACTIVE and b1.button(t("Stop"), key="train.stop"):
        runs.stop(run_id)
        st.toast(t("stopping: the run saves a checkpoint after this step"))
    if status in ("stopped", "interrupted", "failed") and b2.button(t("Resume"), key="train.resume"):
        try:
            runs.resume(run_id)
        except TuneLabError as exc:
            show_error(exc)
    if rows:
        st.plotly_chart(_charts(rows), key=f"train.chart.{run_id}")
    if st_.get("best_step") is not None and st_.get("best_eval_loss") is not None:
        st.caption(t("best eval loss {loss} at step {step}", loss=f"{st_['best_eval_loss']:.4f}", step=st_["best_step"])
                   + (t(" · stopped early: the run's weights are that step's") if st_.get("early_stopped") else ""))
    for w in diagnose(rows, finished=status in jobs.FINAL):
        st.warning(t(w["message"], **w["values"]) + " " + t(w["suggestion"], **w["values"]),
                   icon=":material/warning:")
    try:
        chosen = runs.config(run_id).recipe
    except TuneLabError:
        chosen = {}
    if chosen:
        with st.expander(t("Recipe of this run")):
            show_recipe(chosen, key=f"train.run_recipe.{run_id}")
    with st.expander(t("Log"), expanded=status == "failed"):
        st.code(runs.log_tail(run_id) or t("(empty)"), language=None)
    if status == "completed":
        name = manage.meta(run_id)["name"] or run_id
        st.success(t("Done: {name} is ready to try, compare or export below.", name=name))
        playground_link(run_id, "train.open_playground")


EXPORT_LABELS = {"adapter": "adapter only (small; needs the base model)",
                 "merged": "merged weights (safetensors, a standalone model)",
                 "gguf": "GGUF float32 for llama.cpp (same answers)",
                 "gguf-q8_0": "GGUF Q8_0 for llama.cpp (3.7x smaller, faster)",
                 "ollama": "Ollama: GGUF + Modelfile folder (ollama create)",
                 "gguf-q4_k_m": "GGUF Q4_K_M for llama.cpp (needs the llamacpp extra)",
                 "gguf-q4_0": "GGUF Q4_0 for llama.cpp (needs the llamacpp extra)",
                 "gguf-q5_k_m": "GGUF Q5_K_M for llama.cpp (needs the llamacpp extra)",
                 "gguf-q6_k": "GGUF Q6_K for llama.cpp (needs the llamacpp extra)",
                 "ollama-q4_k_m": "Ollama with a Q4_K_M GGUF (needs the llamacpp extra)"}


def export_panel(run_id: str) -> None:
    """Export a run with saved weights as a background `tunelab export` job; lists its exports."""
    from tunelab.train import export

    try:
        status = (runs.status(run_id) or {}).get("status")
    except TuneLabError:  # deleted (or half-written) since the page listed it
        return
    if status not in ("completed", "stopped"):
        return
    with st.expander(t("Export this run"), icon=":material/download:", expanded=bool(export.list_jobs(run_id))):
        labels = {k: t(EXPORT_LABELS.get(k, k)) for k in export.FORMATS}
        c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
        fmt = c1.selectbox(t("Format"), list(export.FORMATS), key="train.export_format", format_func=labels.get)
        name = c2.text_input(t("Name"), value=run_id, key="train.export_name",
                             help=t("Written under the workspace's exports/ folder."))
        if c3.button(t("Export"), key="train.export", icon=":material/download:"):
            try:
                export.start(run_id, name, fmt)
            except TuneLabError as exc:
                show_error(exc)
        st.caption(t("The same from a terminal: `{cmd}`",
                     cmd=shlex.join(["tunelab", "export", run_id, name + export.FORMATS[fmt][1], *export.FORMATS[fmt][0]])))
        export_jobs(run_id)


def _download(path: str, key: str) -> None:
    """A download button for one exported file or folder (a folder is zipped once, when first clicked)."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        st.caption(t("{name} no longer exists", name=p.name))
        return
    name = p.name + (".zip" if p.is_dir() else "")
    # Deferred: the bytes are read (and a folder zipped) only when the button is clicked, never on a rerun.
    st.download_button(t("Download {name} ({mb} MB)", name=name, mb=manage.size_mb(p)),
                       lambda: open(manage.download_file(p), "rb"), file_name=name, key=key,
                       mime="application/zip" if p.is_dir() else "application/octet-stream",
                       icon=":material/download:", on_click="ignore")


@st.fragment(run_every=2)
def export_jobs(run_id: str) -> None:
    """This run's exports with their status and downloads, re-read from disk every 2 seconds."""
    from tunelab.train import export

    rows = export.list_jobs(run_id)
    if not rows:
        return
    st.dataframe([{"format": j.get("format"), "status": t(j.get("status") or "queued"),
                   "out": j.get("out"), "error": t_error(j["error"]) if j.get("error") else ""} for j in rows],
                 hide_index=True, key="train.exports",
                 column_config={"format": t("Format"), "status": t("Status"), "out": t("File or folder"),
                                "error": t("Error")})
    done = [j for j in rows if j.get("status") == "completed"]
    for j in done:
        for i, path in enumerate(j.get("files") or [j.get("out")]):
            _download(path, key=f"train.download.{j['id']}.{i}")
    if done:
        playground_link(run_id, "train.export_playground")
