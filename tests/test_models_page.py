"""The Models page (issue 24) in AppTest, and the catalog's costs from the one estimator."""

from __future__ import annotations

import pytest

from pagetest import open_page, texts


def test_catalog_lists_the_shipped_models_with_their_facts(workspace):
    from tunelab.train import catalog

    rows = {r["name"]: r for r in catalog.catalog()}
    smol = rows["smollm2-135m-instruct"]
    assert smol["architecture"] == "LlamaForCausalLM" and smol["template"] == "chatml" and smol["license"]
    assert smol["disk_bytes"] > 50e6 and rows["gemma3-270m"]["template"] == "alpaca"


@pytest.mark.slow
def test_catalog_lists_a_run_with_its_own_template(workspace, tmp_path):
    import tiny_model
    from tunelab.train import catalog, runs
    from tunelab.train.config import TrainConfig

    base = tiny_model.build(tmp_path / "base")
    (base / "chat_template.jinja").unlink()
    tiny_model.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": str(base), "data": "tiny", "max_steps": 1, "save_steps": 1, "batch_size": 2, "cutoff_len": 64,
             "template": "phi3", "auto_report": False})
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0
    row = next(r for r in catalog.catalog() if r["name"] == run_id)
    assert row["template"] == "phi3" and row["kind"] == "run" and row["revision"] == "step 1" and row["disk_bytes"]
    assert catalog.costs(run_id, free=64e9, device="cpu")["training"][0]["fits"]


def test_costs_come_from_the_training_estimator_and_say_why(workspace):
    from tunelab.train import catalog, estimate
    from tunelab.train.config import TrainConfig

    c = catalog.costs("smollm2-135m-instruct", free=64e9, device="cpu")
    rows = {r["method"]: r for r in c["training"]}
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": "smollm2-135m-instruct", "batch_size": 4, "cutoff_len": catalog.TOKENS_PER_EXAMPLE})
    est = estimate.estimate(cfg)  # the Train page's own estimate of the same run
    assert rows["lora"]["memory_gb"] == pytest.approx(est["memory_gb"], abs=0.02)
    per_token = est["seconds_per_step"] / est["tokens_per_step"]
    assert rows["lora"]["minutes_per_1000"] == pytest.approx(1000 * catalog.TOKENS_PER_EXAMPLE * per_token / 60, rel=0.05)
    assert rows["lora"]["fits"] and rows["full"]["fits"] and rows["full"]["memory_gb"] > rows["lora"]["memory_gb"]
    assert rows["qlora"]["fits"] is False and "CUDA" in rows["qlora"]["reason"]
    tight = {r["method"]: r for r in catalog.costs("smollm2-135m-instruct", free=1.8e9, device="cpu")["training"]}
    assert tight["lora"]["fits"] and "gradient checkpointing" in tight["lora"]["reason"]
    assert tight["full"]["fits"] is False and "needs about" in tight["full"]["reason"]
    gpu = {r["method"]: r for r in catalog.costs("smollm2-135m-instruct", free=80e9, device="cuda")["training"]}
    assert gpu["qlora"]["fits"] and gpu["qlora"]["memory_gb"] < gpu["lora"]["memory_gb"] + 1
    assert c["generation"]["llama.cpp"] > c["generation"]["transformers"] > 0


def test_models_page_shows_the_catalog_and_a_cost_table(workspace):
    at = open_page("pages/models.py")
    table = next(df.value for df in at.dataframe if "architecture" in df.value.columns)
    assert "smollm2-135m-instruct" in table["model"].tolist() and set(table["chat template"]) == {"chatml", "alpaca"}
    costs = next(tb.value for tb in at.table if "minutes per 1,000 examples" in tb.value.columns)
    assert list(costs["method"]) == ["lora", "qlora", "full"]
    assert "does not fit" in costs.iloc[1].tolist() and "GB free memory" in texts(at)


def test_models_page_refuses_a_bad_hub_id_in_one_line(workspace):
    at = open_page("pages/models.py")
    at.text_input(key="models.hub_id").set_value("not a hub id")
    next(b for b in at.button if b.label == "Add model").click()
    at.run()
    assert not at.exception and "'not a hub id' is not a Hub id (ORG/NAME or ORG/NAME@REVISION)" in texts(at)
