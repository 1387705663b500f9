"""Data: import, browse, search, clean, split, export and undo — every edit a new version."""

import streamlit as st

from tunelab.data import export as exporter
from tunelab.data import formats, store
from tunelab.data.schema import SEARCH_FIELDS
from tunelab.ui import data_actions as act
from tunelab.ui import data_widgets as w
from tunelab.ui import layout
from tunelab.ui.i18n import t

layout.init_state()
st.title(t("Data"))
st.caption(t("Bring in instruction records, look at them, fix them, and split off a test set. "
             "Every change writes a new version; nothing is overwritten, and Undo goes back."))
act.show_flash()

datasets = store.list_datasets()
with st.expander(t("Import a file"), icon=":material/upload:", expanded=not datasets):
    st.file_uploader(t("Alpaca / ShareGPT / OpenAI messages (JSON or JSONL), CSV or Parquet"),
                     type=["json", "jsonl", "csv", "tsv", "parquet"], key="data.upload", accept_multiple_files=True,
                     help=t("A LLaMA-Factory dataset_info.json reads only the files uploaded together with it."))
    c1, c2, c3 = st.columns(3)
    c1.text_input(t("Dataset name"), key="data.upload_name", placeholder=t("default: the file's name"))
    c2.selectbox(t("Format"), formats.FORMATS, key="data.upload_format")
    c3.text_input(t("Column mapping (CSV/Parquet)"), key="data.upload_map",
                  placeholder="instruction=question,output=answer")
    st.button(t("Import"), key="data.import", on_click=act.import_upload, type="primary",
              disabled=not st.session_state.get("data.upload"))
    act.import_confirm_panel()
    act.show_import_result()

if not datasets:
    st.info(t("The workspace has no dataset yet. Upload a file above, or start with the samples: "
              "English and Chinese instruction records, some with a system prompt and earlier turns."))
    st.button(t("Import the shipped samples"), key="data.samples", on_click=act.import_samples,
              icon=":material/download:")
    st.stop()

names = [d["name"] for d in datasets]
layout.from_url("data.dataset", "dataset")
layout.from_url("data.version", "v", int)
if st.session_state["data.dataset"] not in names:
    st.session_state["data.dataset"] = names[0]
manifest = store.manifest(st.session_state["data.dataset"])
versions = {v["version"]: v for v in manifest["versions"]}
if st.session_state["data.version"] not in versions:
    st.session_state["data.version"] = manifest["head"]

# Option labels are translated here, in the run: AppTest also calls format_func outside it.
dataset_labels = {d["name"]: t("{name} ({records} records)", name=d["name"], records=d["records"]) for d in datasets}
version_labels = {v: w.version_label(entry, manifest["head"]) for v, entry in versions.items()}
c1, c2 = st.columns(2)
name = c1.selectbox(t("Dataset"), names, key="data.dataset", on_change=act.reset_view, format_func=dataset_labels.get)
version = c2.selectbox(t("Version"), sorted(versions, reverse=True), key="data.version", on_change=act.reset_page,
                       format_func=version_labels.get)
layout.to_url(dataset=name, v=version)
with st.expander(t("Lineage: every version of this dataset"), icon=":material/account_tree:"):
    st.dataframe(w.lineage(name), hide_index=True, width="stretch", column_config=w.lineage_headers())

browse, clean_tab, split_tab, export_tab, undo_tab, delete_tab = st.tabs(
    [t("Browse & search"), t("Clean"), t("Split"), t("Export"), t("Undo"), t("Delete")])

with browse:
    c1, c2, c3 = st.columns([3, 1, 1])
    text = c1.text_input(t("Search"), key="data.query", on_change=act.reset_page,
                         placeholder=t("words to find (English or 中文); empty = browse all"))
    c2.selectbox(t("In field"), SEARCH_FIELDS, key="data.field")
    size = c3.selectbox(t("Per page"), w.PAGE_SIZES, key="data.page_size", on_change=act.reset_page)
    try:
        if text.strip():
            # Search returns the best hits first; pages slice the top SEARCH_MAX of them.
            total = min(w.search(name, version, text, st.session_state["data.field"], 1)["total"], w.SEARCH_MAX)
        else:
            total = versions[version]["records"]
        offset = act.pager(total, size)
        if text.strip():
            hits = w.search(name, version, text, st.session_state["data.field"], offset + size)
            shown = {**hits, "records": hits["records"][offset:]}
        else:
            shown = w.page(name, version, offset, size)
    except Exception as exc:  # one clear line for a user error, a traceback only for a bug
        layout.show_error(exc)
        st.stop()
    if text.strip():
        exact, related = shown["exact"], shown["total"] - shown["exact"]
        st.caption((t("{exact} match exactly, {related} more related (share some of the words), best first.",
                      exact=exact, related=related) if shown["exact_complete"] else
                    t("At least {exact} match exactly (looked for among the best {pool}) of {total} that share "
                      "some of the words, best first.", exact=exact, pool=w.search_pool(), total=shown["total"]))
                   + (t(" The top {max} can be paged through.", max=w.SEARCH_MAX) if shown["total"] > w.SEARCH_MAX
                      else "")
                   + t(' Put "quotes" around words that must appear together.'))
    records = shown["records"]
    extras = w.originals(name, version, tuple(r["id"] for r in records))
    st.dataframe(w.records_frame(records, extras), hide_index=True, width="stretch", key="data.table")
    if records:
        if st.session_state.get("data.record", 0) not in range(len(records)):
            st.session_state["data.record"] = 0
        st.selectbox(t("Open a record"), range(len(records)), key="data.record",
                     format_func=lambda i: f"{offset + i + 1}. {w.user_text(records[i], extras.get(records[i]['id']))[:90]}")
        record = records[st.session_state["data.record"]]
        st.caption(f"id `{record['id']}`" + (t(" — search terms are marked") if text.strip() else ""))
        w.conversation(record, text, extras.get(record["id"]))
    elif text.strip():
        st.info(t("No record matches. Try fewer words or the field `any`."))

with clean_tab:
    head = manifest["head"]
    st.caption(t("Cleaning reads the head version (v{head}) and writes a new one; preview first.", head=head))
    c1, c2 = st.columns(2)
    c1.selectbox(t("Remove duplicates"), ("no", "exact", "near"), key="data.clean_dedup",
                 format_func={"no": t("no"), "exact": t("exact (same text after normalising)"),
                              "near": t("near (MinHash, ≥ 0.8 similar) + exact")}.get)
    c1.number_input(t("Drop records longer than (tokens, 0 = keep all)"), min_value=0, step=128,
                    key="data.clean_max_tokens")
    c2.checkbox(t("Strip whitespace around every field"), key="data.clean_strip")
    c2.checkbox(t("Drop records with an empty output or prompt"), key="data.clean_drop_empty")
    c2.checkbox(t("Redact personal data (emails, phones, IPs, card and ID numbers)"), key="data.clean_redact")
    if st.session_state["data.clean_redact"]:
        c2.text_area(t("Never redact records containing (a keyword or regular expression per line)"),
                     key="data.clean_redact_exclude", height=80, placeholder="hypothetical\n555-01\\d\\d",
                     help=t("For records whose numbers or addresses are not personal data, such as "
                            "\"Generate a hypothetical phone number\". Case does not matter."))
    opts = act.clean_options()
    st.button(t("Preview"), key="data.clean_preview", on_click=act.request_preview, args=(name, head))
    if st.session_state.get("data.preview") == (name, head, opts):
        try:
            preview = w.clean_preview(name, head, **opts)
        except Exception as exc:
            layout.show_error(exc)
        else:
            act.show_preview(preview, name, head)
            st.button(t("Apply: write v{version}", version=max(versions) + 1), key="data.clean_apply", type="primary",
                      on_click=act.apply_clean, disabled=not preview["counts"])

with split_tab:
    st.caption(t("Writes two datasets, `{name}-train` and `{name}-test`, from the head version; "
                 "`{name}` itself is unchanged. The same seed gives the same split.", name=name))
    c1, c2 = st.columns(2)
    c1.number_input(t("Test size (a fraction below 1, or a number of records)"), min_value=0.0,
                    step=0.05, key="data.split_test")
    c2.number_input(t("Seed"), min_value=0, step=1, key="data.split_seed")
    st.button(t("Split"), key="data.split", on_click=act.split, args=(name,), type="primary")

with export_tab:
    c1, c2 = st.columns(2)
    c1.selectbox(t("Format"), exporter.FORMATS, key="data.export_format",
                 help=t("llamafactory: a folder with the file and a dataset_info.json (downloaded as .zip)"))
    fmt = st.session_state["data.export_format"]
    c2.button(t("Export v{version}", version=version), key="data.export", on_click=act.export,
              args=(name, version, fmt))
    act.show_download(name, version, fmt)

with undo_tab:
    act.undo_panel(name, manifest)

with delete_tab:
    act.delete_panel(name, manifest)
