"""The Data page's actions (import, clean, split, export, undo) as button callbacks, and their panels.

Actions run as on_click callbacks, before the script reruns, so they may move the page's pickers
(for example to the version just written); their outcome is kept in session state as a message
shown at the top of the next run ("data.flash").
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import streamlit as st

from tunelab.data import clean, split as splitter, store, uploads
from tunelab.data import export as exporter
from tunelab.data.importer import import_path, parse_map
from tunelab.errors import TuneLabError
from tunelab.ui import near_dup_widgets
from tunelab.ui.i18n import t, t_error

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "samples" / "alpaca_mixed.jsonl"
REASONS = {
    "duplicate_exact": "exact duplicate", "duplicate_near": "near duplicate", "empty": "empty",
    "too_long": "over the token limit", "stripped": "whitespace stripped (kept)",
    "redaction_excluded": "personal data left as written (excluded)",
}
PII_NAMES = {"email": "email addresses", "phone": "phone numbers", "ip": "IP addresses", "card": "card numbers",
             "id": "ID numbers"}
# The preview's section titles, {n} records each; redacted_<kind> for every PII kind of clean.PII_RULES.
REASON_TITLES = {
    "duplicate_exact": "Exact duplicates removed ({n})", "duplicate_near": "Near duplicates removed ({n})",
    "empty": "Empty records removed ({n})", "too_long": "Records over the token limit removed ({n})",
    "stripped": "Whitespace stripped ({n})", "redaction_excluded": "Left as written on request ({n})",
    "redacted_email": "Email addresses redacted ({n})", "redacted_phone": "Phone numbers redacted ({n})",
    "redacted_ip": "IP addresses redacted ({n})", "redacted_card": "Card numbers redacted ({n})",
    "redacted_id": "ID numbers redacted ({n})",
}


def _flash(kind: str, text: str) -> None:
    st.session_state["data.flash"] = (kind, text)


def show_flash() -> None:
    """The outcome of the last action, once."""
    kind, text = st.session_state.pop("data.flash", None) or (None, None)
    if kind == "error":
        st.error(text, icon=":material/error:")
    elif kind:
        st.success(text, icon=":material/check_circle:")


def _guarded(fn):
    """Run an action; a TuneLabError becomes the flash message instead of a traceback."""
    try:
        fn()
    except TuneLabError as exc:
        _flash("error", t_error(str(exc)))


def _select(name: str, version: int | None = None) -> None:
    """Point the pickers at a dataset (and a version, default its head)."""
    st.session_state["data.dataset"] = name
    st.session_state["data.version"] = version or store.manifest(name)["head"]
    reset_page()


def reset_page() -> None:
    st.session_state["data.page"] = 1
    st.session_state["data.record"] = 0


def reset_view() -> None:
    """A new dataset: show its head from the first page, forget previews and exports."""
    st.session_state["data.version"] = None
    st.session_state["data.clean_redact_skip"] = []  # record ids of another dataset
    st.session_state["data.clean_keep_near"] = []
    for key in ("data.preview", "data.export_file", "data.undo_confirm"):
        st.session_state.pop(key, None)
    reset_page()


def turn_page(step: int, pages: int) -> None:
    st.session_state["data.page"] = min(max(1, st.session_state["data.page"] + step), pages)


def pager(total: int, size: int) -> int:
    """Prev / page number / Next for `total` records; returns the offset of the current page."""
    pages = max(1, math.ceil(total / size))
    st.session_state["data.page"] = min(max(1, st.session_state["data.page"]), pages)
    offset = (st.session_state["data.page"] - 1) * size
    c1, c2, c3, c4 = st.columns([1, 2, 1, 4], vertical_alignment="bottom")
    c1.button(t("◀ Prev"), key="data.prev", on_click=turn_page, args=(-1, pages),
              disabled=st.session_state["data.page"] <= 1)
    c2.number_input(t("Page (of {pages})", pages=pages), min_value=1, max_value=pages, key="data.page")
    c3.button(t("Next ▶"), key="data.next", on_click=turn_page, args=(1, pages),
              disabled=st.session_state["data.page"] >= pages)
    c4.caption(t("Records {first}–{last} of {total}", first=min(total, offset + 1), last=min(total, offset + size),
                 total=total))
    return offset


# ---------------------------------------------------------------- import


def _uploaded() -> list:
    """The files in the uploader: one, or several uploaded together (a dataset_info.json and its files)."""
    files = st.session_state.get("data.upload")
    if not files:
        return []
    return list(files) if isinstance(files, list) else [files]


def _upload_key(files: list) -> tuple:
    """What a confirmation is for: these files under this name and format (a change asks again)."""
    ss = st.session_state
    return tuple((f.name, f.size) for f in files), ss["data.upload_name"].strip(), ss["data.upload_format"]


def import_upload(confirmed: bool = False) -> None:
    """Save the uploaded file(s) under uploads/ and import them.

    An upload that would add a version to a dataset that already exists is held until the user
    confirms (`data.import_confirm`); a file that happens to share a dataset's name must not
    silently replace what the page shows.
    """
    files = _uploaded()
    if not files:
        return
    ss = st.session_state

    def run() -> None:
        name, fmt = ss["data.upload_name"].strip(), ss["data.upload_format"]
        mapping = parse_map(ss["data.upload_map"].strip() or None)
        payload = [(f.name, f.getvalue()) for f in files]
        asked = ss.get("data.import_confirm") or {}
        if not (confirmed and asked.get("key") == _upload_key(files)):
            existing = uploads.existing_targets(payload, name or None, fmt)
            if existing:
                ss["data.import_confirm"] = {"key": _upload_key(files), "existing": existing}
                ss.pop("data.import_result", None)
                return
        ss.pop("data.import_confirm", None)
        result = uploads.import_uploads(payload, name or None, fmt, mapping)
        ss["data.import_result"] = result
        first = result["datasets"][0] if result.get("datasets") else result if "name" in result else None
        if first:
            _select(first["name"], first["version"])

    _guarded(run)


def import_confirm_panel() -> None:
    """The question an upload into existing dataset names waits on: add a version, or cancel."""
    asked = st.session_state.get("data.import_confirm")
    files = _uploaded()
    if not asked or not files or asked["key"] != _upload_key(files):
        return
    existing = asked["existing"]
    if len(existing) == 1:
        d = existing[0]
        st.warning(t("A dataset named `{name}` already exists (v{head}, {records} records). Importing adds "
                     "a new version holding only the uploaded records; v{head} stays in the lineage and Undo "
                     "goes back. Import anyway, or type another dataset name above.", name=d["name"],
                     head=d["version"], records=d["records"]), icon=":material/warning:")
    else:
        shown = ", ".join(f"`{d['name']}`" for d in existing[:10]) + (" …" if len(existing) > 10 else "")
        st.warning(t("{n} datasets already exist: {names}. Importing adds a new version to each, holding only "
                     "the uploaded records; the current versions stay in the lineage and Undo goes back.",
                     n=len(existing), names=shown), icon=":material/warning:")
    c1, c2 = st.columns(2)
    c1.button(t("Yes, add a new version"), key="data.import_yes", type="primary", on_click=import_upload,
              args=(True,))
    c2.button(t("Cancel"), key="data.import_no", on_click=st.session_state.pop, args=("data.import_confirm", None))


def import_samples() -> None:
    """Import the shipped sample dataset (what `make run` imports into an empty workspace)."""

    def run() -> None:
        if not SAMPLE.exists():
            raise TuneLabError(f"the sample file {SAMPLE} is missing")
        result = import_path(str(SAMPLE))
        st.session_state["data.import_result"] = result
        _select(result["name"], result["version"])

    _guarded(run)


def show_import_result() -> None:
    """The last import's outcome: per dataset for one file; one summary (with the details folded
    away) for a dataset_info.json, however many entries it has."""
    result = st.session_state.get("data.import_result")
    if not result:
        return
    if "datasets" not in result:
        st.success(t("`{name}` v{version}: imported {imported} record(s), skipped {skipped}.", name=result["name"],
                     version=result["version"], imported=result["imported"], skipped=result["skipped"]),
                   icon=":material/check_circle:")
        if result["errors"]:
            with st.expander(t("{n} skipped record(s) in {name}: why", n=len(result["errors"]), name=result["name"])):
                st.dataframe(pd.DataFrame(result["errors"]), hide_index=True, width="stretch",
                             column_config={"line": t("Line"), "error": t("Error")})
        return
    done, skipped = result["datasets"], result.get("skipped") or []
    st.success(t("Imported {n} dataset(s): {records} record(s), {bad} bad record(s) skipped.", n=len(done),
                 records=sum(r["imported"] for r in done), bad=sum(r["skipped"] for r in done)),
               icon=":material/check_circle:")
    with st.expander(t("Imported datasets")):
        st.dataframe(pd.DataFrame([{k: r[k] for k in ("name", "version", "imported", "skipped")} for r in done]),
                     hide_index=True, width="stretch",
                     column_config={"name": t("Dataset"), "version": t("Version"), "imported": t("imported"),
                                    "skipped": t("skipped")})
    errors = [dict(e, name=r["name"]) for r in done for e in r["errors"]]
    if errors:
        with st.expander(t("{n} skipped record(s): why", n=len(errors))):
            st.dataframe(pd.DataFrame(errors)[["name", "line", "error"]], hide_index=True, width="stretch",
                         column_config={"name": t("Dataset"), "line": t("Line"), "error": t("Error")})
    if skipped:
        st.warning(t("{n} dataset_info entries not imported.", n=len(skipped)), icon=":material/warning:")
        with st.expander(t("Entries not imported: why")):
            st.dataframe(pd.DataFrame(skipped)[["name", "reason"]], hide_index=True, width="stretch",
                         column_config={"name": t("Entry"), "reason": t("Reason")})


# ---------------------------------------------------------------- clean


def clean_options() -> dict:
    """The Clean tab's choices as clean.plan()/clean.clean() keyword arguments."""
    ss = st.session_state
    redact = ss["data.clean_redact"]
    return {"dedup": None if ss["data.clean_dedup"] == "no" else ss["data.clean_dedup"], "strip": ss["data.clean_strip"],
            "drop_empty": ss["data.clean_drop_empty"], "redact_pii": redact,
            "max_tokens": int(ss["data.clean_max_tokens"]) or None,
            "redact_exclude": tuple(x.strip() for x in ss["data.clean_redact_exclude"].splitlines() if x.strip())
            if redact else (),
            "redact_skip": tuple(sorted(ss["data.clean_redact_skip"])) if redact else (),
            "keep_near": tuple(sorted(ss["data.clean_keep_near"])) if ss["data.clean_dedup"] == "near" else ()}


def request_preview(name: str, head: int) -> None:
    # Options are read here, at click time; the preview stays shown only while dataset, head and
    # options still match what was previewed.
    st.session_state["data.preview"] = (name, head, clean_options())


def show_preview(preview: dict, name: str, head: int) -> None:
    """Counts per reason, then per reason a section: the records a clean would remove, or each
    redacted record's text before and after, with a box to leave that record as written."""
    from tunelab.ui.data_widgets import diff_html

    if not preview["counts"]:
        st.info(t("Nothing to change with these options."))
        near_dup_widgets.show(preview, name, head, request_preview)  # all kept on request: still listed, to drop again
        return
    removed = preview["before"] - preview["after"]
    st.markdown(t("**{before} → {after} records** ({removed} removed)", before=preview["before"],
                  after=preview["after"], removed=removed))
    rows = [{t("reason"): _reason(r), t("records"): n} for r, n in preview["counts"].items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    near_dup_widgets.show(preview, name, head, request_preview)
    for reason, examples in preview["examples"].items():
        if examples and reason != "duplicate_near":  # near duplicates are shown with their twins above
            with st.expander(_title(reason, preview["counts"][reason])):
                st.dataframe(pd.DataFrame(examples), hide_index=True, width="stretch")
    skip = set(st.session_state["data.clean_redact_skip"])
    for reason, changes in preview.get("changes", {}).items():
        if not changes:
            continue
        with st.expander(_title(reason, preview["counts"][reason]), expanded=True):
            if len(changes) < preview["counts"][reason]:
                st.caption(t("The first {shown} of {n} records; leave others as written with a keyword below.",
                             shown=len(changes), n=preview["counts"][reason]))
            for change in changes:
                rid = change["id"]
                st.checkbox(t("Record #{row} (id `{id}`): leave as written", row=change["row"], id=rid),
                            value=rid in skip, key=f"data.clean_keep.{name}.{rid}",
                            on_change=_toggle_skip, args=(name, head, rid))
                for field, before, after in change["texts"]:
                    st.caption(t(field))
                    st.html(diff_html(before, after))


def _title(reason: str, n: int) -> str:
    """A preview section's title: what happened and to how many records ("Phone numbers redacted (3)")."""
    if reason in REASON_TITLES:
        return t(REASON_TITLES[reason], n=n)
    return t("Personal data redacted: {kind} ({n})", kind=reason.replace("redacted_", ""), n=n)


def _toggle_skip(name: str, head: int, record_id: str) -> None:
    """A preview box: leave a record as written (or redact it after all), and preview again."""
    skip = set(st.session_state["data.clean_redact_skip"])
    skip ^= {record_id}
    st.session_state["data.clean_redact_skip"] = sorted(skip)
    request_preview(name, head)


def _reason(reason: str) -> str:
    """A clean reason as the preview table shows it; every reason outside REASONS is redacted_<kind>."""
    if reason in REASONS:
        return t(REASONS[reason])
    kind = reason.replace("redacted_", "")
    return t("personal data redacted: {kind} (kept)", kind=t(PII_NAMES[kind]) if kind in PII_NAMES else kind)


def apply_clean() -> None:
    """Apply exactly the previewed cleaning."""
    name, _, opts = st.session_state["data.preview"]

    def run() -> None:
        from tunelab.models.tokens import token_counter

        r = clean.clean(name, **opts, tokenizer=token_counter() if opts.get("max_tokens") else None)
        st.session_state.pop("data.preview", None)
        st.session_state["data.clean_redact_skip"] = []  # those records are written as they were
        st.session_state["data.clean_keep_near"] = []
        _select(name, r["version"])
        _flash("success", t("Wrote {name} v{version}: {before} → {after} records.", name=name, version=r["version"],
                            before=r["before"], after=r["after"]))

    _guarded(run)


# ---------------------------------------------------------------- split, export, undo


def split(name: str) -> None:
    def run() -> None:
        r = splitter.split(name, float(st.session_state["data.split_test"]), int(st.session_state["data.split_seed"]))
        _flash("success", t("Wrote {train} ({train_n} records) and {test} ({test_n} records).",
                            train=r["train"]["name"], train_n=r["train"]["records"],
                            test=r["test"]["name"], test_n=r["test"]["records"]))

    _guarded(run)


def export(name: str, version: int, fmt: str) -> None:
    """Write the export under exports/ (a zip for a folder) and remember it for the download button."""

    def run() -> None:
        suffix = {"alpaca": ".json", "sharegpt": ".json", "jsonl": ".jsonl", "parquet": ".parquet"}.get(fmt, "")
        # force: the name is this page's own, for one immutable version, so a second click writes the same file
        r = exporter.export(name, f"{name}-v{version}-{fmt}{suffix}", fmt, version, force=True)
        path = Path(r["path"])
        if path.is_dir():  # llamafactory: a folder, downloaded as one zip
            path = Path(shutil.make_archive(str(path), "zip", root_dir=path))
        st.session_state["data.export_file"] = {"key": (name, version, fmt), "path": str(path),
                                                "records": r["records"]}

    _guarded(run)


def show_download(name: str, version: int, fmt: str) -> None:
    """The download button for the export made for exactly this dataset, version and format."""
    made = st.session_state.get("data.export_file")
    if not made or made["key"] != (name, version, fmt):
        return
    path = Path(made["path"])
    st.caption(t("{n} records written to `{path}`", n=made["records"], path=path))
    # Deferred: the file is read when the button is pressed, not on every rerun.
    st.download_button(t("Download {file}", file=path.name), data=lambda: path.read_bytes(), file_name=path.name,
                       key="data.download", icon=":material/download:")


def undo_panel(name: str, manifest: dict) -> None:
    """Undo with a confirmation that names the version it goes back to."""
    versions = {v["version"]: v for v in manifest["versions"]}
    head = versions[manifest["head"]]
    parent = versions.get(head.get("parent"))
    if not parent:
        st.info(t("`{name}` is at its first version (v{version}); there is nothing to undo.", name=name,
                  version=head["version"]))
        return
    st.markdown(t("The head is **v{head}** ({head_op}, {head_n} records). Undo goes back to **v{parent}** "
                  "({parent_op}, {parent_n} records); v{head} stays on disk and in the lineage.",
                  head=head["version"], head_op=head["op"], head_n=head["records"],
                  parent=parent["version"], parent_op=parent["op"], parent_n=parent["records"]))
    if st.session_state.get("data.undo_confirm") != (name, head["version"]):
        st.button(t("Undo…"), key="data.undo", on_click=_ask_undo, args=(name, head["version"]))
        return
    st.warning(t("Go back from v{head} to v{parent}?", head=head["version"], parent=parent["version"]))
    c1, c2 = st.columns(2)
    c1.button(t("Yes, go back to v{version}", version=parent["version"]), key="data.undo_yes", type="primary",
              on_click=_undo, args=(name,))
    c2.button(t("Cancel"), key="data.undo_no", on_click=st.session_state.pop, args=("data.undo_confirm", None))


def _ask_undo(name: str, head: int) -> None:
    st.session_state["data.undo_confirm"] = (name, head)


def _undo(name: str) -> None:
    def run() -> None:
        st.session_state.pop("data.undo_confirm", None)
        st.session_state["data.clean_redact_skip"] = []
        entry = store.undo(name)
        _select(name, entry["version"])
        _flash("success", t("{name} is back at v{version} ({records} records).", name=name, version=entry["version"],
                            records=entry["records"]))

    _guarded(run)



# ---------------------------------------------------------------- delete


def delete_panel(name: str, manifest: dict) -> None:
    """Delete a dataset: what goes, refused while a job uses it, and a typed confirmation."""
    versions = manifest["versions"]
    size = sum(p.stat().st_size for p in store.version_path(name, manifest["head"]).parent.rglob("*")
               if p.is_file())
    st.markdown(t("Deleting **{name}** removes its {n} version(s) and their files ({mb:.1f} MB) from the "
                  "workspace. This cannot be undone; datasets split from it stay.", name=name, n=len(versions),
                  mb=size / 1e6))
    busy = store.users(name)
    if busy:
        st.warning(t("In use by {jobs}: stop it or let it finish, then delete.", jobs=", ".join(busy)),
                   icon=":material/lock:")
    if st.session_state.get("data.delete_confirm") != name:
        st.button(t("Delete {name}…", name=name), key="data.delete", icon=":material/delete:", disabled=bool(busy),
                  on_click=st.session_state.__setitem__, args=("data.delete_confirm", name))
        return
    st.error(t("Type the name `{name}` to delete it for good.", name=name), icon=":material/warning:")
    typed = st.text_input(t("Dataset name"), key="data.delete_typed")
    c1, c2 = st.columns(2)
    c1.button(t("Delete for good"), key="data.delete_yes", type="primary", disabled=typed.strip() != name or bool(busy),
              on_click=_delete, args=(name,))
    c2.button(t("Cancel"), key="data.delete_no", on_click=_cancel_delete)


def _cancel_delete() -> None:
    st.session_state.pop("data.delete_confirm", None)
    st.session_state["data.delete_typed"] = ""


def _delete(name: str) -> None:
    def run() -> None:
        _cancel_delete()
        store.delete(name)
        st.session_state["data.dataset"] = None  # the page picks the first one left
        reset_view()
        _flash("success", t("Deleted {name}.", name=name))

    _guarded(run)
