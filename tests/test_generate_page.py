"""The Generate page through AppTest: review a seeded batch, feed rejections into the prompt, accept."""

from __future__ import annotations

from pathlib import Path

from pagetest import open_page, texts

from tunelab import jobs
from tunelab.data import store
from tunelab.synth import generate, prompts

SEEDS = Path(__file__).resolve().parents[1] / "data" / "samples" / "seeds.jsonl"
ITEMS = [
    "Name three fruits that are red.",
    "Describe the picture above.",
    "Write a haiku about winter.",
    "我最近运气怎么样？",
    "What is two plus two?",
]


def seed_batch(workspace) -> str:
    """A finished batch on disk, as `tunelab generate --no-accept` leaves it (no model needed)."""
    seeds = workspace.parent / "seeds.jsonl"
    seeds.write_text(SEEDS.read_text(encoding="utf-8"), encoding="utf-8")
    cfg = generate.GenerateConfig(seeds=str(seeds), n=len(ITEMS), template="default-en", prompt_version=1)
    batch = generate.create(cfg)
    items = [{"id": i, "strategy": "new", "instruction": t, "input": "", "output": f"answer {i}",
              "status": "pending", "rule": "", "reason": "", "source": ""} for i, t in enumerate(ITEMS)]
    generate.save_items(batch, items)
    jobs.write_status(generate.batch_dir(batch), status="completed", prompt_version=1,
                      seed_dataset=str(seeds), seed_version=None, model="smollm2-135m-instruct")
    return batch


def test_review_reject_two_feed_mistakes_accept_rest(workspace):
    prompts.get("default-en")  # v1 exists, as after any generation
    batch = seed_batch(workspace)
    at = open_page("pages/generate.py")
    assert at.selectbox(key="gen.batch").value == batch
    assert at.text_area(key="gen.item.instruction.1").value == "Describe the picture above."

    at.radio(key="gen.item.status.1").set_value("rejected")
    at.text_input(key="gen.item.reason.1").set_value("Asks about a picture the model cannot see.")
    at.radio(key="gen.item.status.3").set_value("rejected")
    at.text_input(key="gen.item.reason.3").set_value("Write in English only.")
    at.text_area(key="gen.item.output.0").set_value("Strawberries, cherries and apples.")
    at.run()
    assert not at.exception, at.exception
    saved = generate.load_items(batch)
    assert [it["status"] for it in saved] == ["pending", "rejected", "pending", "rejected", "pending"]
    assert saved[0]["output"] == "Strawberries, cherries and apples."  # edited in place
    assert saved[1]["rule"] == "review"

    assert set(at.multiselect(key="gen.reasons").value) == {
        "Asks about a picture the model cannot see.", "Write in English only."}
    at.button(key="gen.mistakes").click().run()
    assert not at.exception, at.exception
    v2 = prompts.get("default-en")
    assert (v2["version"], v2["parent"]) == (2, 1)
    assert set(v2["mistakes"]) == {"Asks about a picture the model cannot see.", "Write in English only."}
    assert at.selectbox(key="gen.version").value == 2
    assert "Asks about a picture" in at.text_area(key="gen.mistakes_text").value
    assert "Saved default-en v2" in texts(at)

    at.button(key="gen.accept_rest").click().run()
    at.text_input(key="gen.target").set_value("grown")
    at.button(key="gen.accept").click().run()
    assert not at.exception, at.exception
    assert "Added 3 record(s) to grown v1" in texts(at)
    rows = store.read("grown").to_pylist()
    assert [r["instruction"] for r in rows] == [ITEMS[0], ITEMS[2], ITEMS[4]]
    assert rows[0]["output"] == "Strawberries, cherries and apples."
    lineage = store.manifest("grown")["versions"][-1]["lineage"]
    assert lineage["batch"] == batch and lineage["prompt_version"] == 1 and lineage["template"] == "default-en"
    assert all(it.get("added_to") == "grown@v1" for it in generate.load_items(batch) if it["status"] == "accepted")
    # the acceptance chart now has the reviewed batch: 3 of 5 for default-en v1
    assert generate.acceptance_by_version() == [
        {"template": "default-en", "version": 1, "batches": 1, "items": 5, "accepted": 3, "rate": 0.6}]


def test_saving_an_edited_template_makes_a_new_version(workspace):
    at = open_page("pages/generate.py")
    assert at.selectbox(key="gen.template").value == "default-en"
    at.text_area(key="gen.text").set_value(prompts.DEFAULT_EN + "\nUse simple words.")
    at.run()
    assert any("Unsaved edits" in w.value for w in at.warning)
    at.text_input(key="gen.note").set_value("simpler words")
    at.button(key="gen.save").click().run()
    assert not at.exception, at.exception
    v = prompts.get("default-en")
    assert v["version"] == 2 and v["note"] == "simpler words" and v["text"].endswith("Use simple words.")
    assert at.selectbox(key="gen.version").value == 2
    assert not at.warning
    at.selectbox(key="gen.version").set_value(1).run()
    assert at.text_area(key="gen.text").value == prompts.DEFAULT_EN


def test_running_batch_shows_progress_and_failed_batch_its_error(workspace):
    import os

    batch = seed_batch(workspace)
    jobs.write_status(generate.batch_dir(batch), status="running", pid=os.getpid(), progress="round 1: 3 prompt(s)",
                      done=1, total=3)
    at = open_page("pages/generate.py")
    assert "round 1: 3 prompt(s)" in at.get("progress")[0].proto.text
    assert not at.radio  # no review cards while it runs
    jobs.write_status(generate.batch_dir(batch), status="failed", error="cannot reach http://127.0.0.1:9/v1")
    at = open_page("pages/generate.py")
    assert [e.value for e in at.error] == ["cannot reach http://127.0.0.1:9/v1"]


def test_the_button_counts_what_the_inputs_ask_for(workspace):
    at = open_page("pages/generate.py")
    at.number_input(key="gen.n").set_value(5).run()
    assert at.button(key="gen.run").label == "Generate batch (≈5)"
    at.checkbox(key="gen.s_para").check().run()  # two strategies, 5 items each
    assert at.button(key="gen.run").label == "Generate batch (≈10)"


def _open_with(query: dict):
    from pagetest import APP, TIMEOUT
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/generate.py")
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_batch_in_the_url_survives_a_refresh(workspace):
    import time

    older = seed_batch(workspace)
    time.sleep(0.01)
    newer = seed_batch(workspace)
    at = _open_with({"batch": older})
    assert at.selectbox(key="gen.batch").value == older  # the link's, not the newest
    at.selectbox(key="gen.batch").set_value(newer).run()
    assert at.query_params["batch"] == newer


def test_batch_labels_are_read_from_disk_and_polled_while_one_is_active(workspace):
    from tunelab.ui import live

    batch = seed_batch(workspace)
    jobs.write_status(generate.batch_dir(batch), status="queued")
    at = open_page("pages/generate.py")
    assert "queued" in at.selectbox(key="gen.batch").format_func(batch)
    shown = {batch: "queued"}
    assert not live.changed("generations", shown)
    jobs.write_status(generate.batch_dir(batch), status="completed", counts={"generated": 5, "accepted": 2})
    assert live.changed("generations", shown)  # what the page's polling fragment reruns on
    at.run()
    assert "completed 2/5 accepted" in at.selectbox(key="gen.batch").format_func(batch)


def test_acceptance_chart_has_a_legend_and_a_percent_axis():
    from tunelab.ui import charts

    rows = [{"template": "default-en", "version": 1, "batches": 1, "items": 5, "accepted": 3, "rate": 0.6},
            {"template": "default-en", "version": 2, "batches": 1, "items": 4, "accepted": 4, "rate": 1.0}]
    fig = charts.acceptance(rows).to_dict()
    assert fig["layout"]["showlegend"] is True and [tr["name"] for tr in fig["data"]] == ["default-en"]
    assert list(fig["data"][0]["y"]) == [60.0, 100.0] and list(fig["layout"]["yaxis"]["range"]) == [0, 105]
