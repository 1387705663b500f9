"""Shared fixtures: every test gets its own empty workspace; converted models are shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Converting a shipped GGUF model takes 20-50 s: convert once per machine, not once per test.
os.environ.setdefault("TUNELAB_MODEL_CACHE", str(ROOT / "data" / "model-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (`-n N`) every worker would start torch with one thread per core: N workers x cores
# threads on the same cores. Give each worker (and the jobs it starts) one thread unless told otherwise.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")


@pytest.fixture(autouse=True)
def _fresh_data_caches():
    """Clear st.cache_data between tests: its keys are (dataset, version), and every test has its
    own workspace holding a different `toy` v1 — one dashboard process only ever has one workspace."""
    yield
    import sys

    if "streamlit" in sys.modules:
        import streamlit as st

        st.cache_data.clear()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty TUNELAB_HOME for one test."""
    home = tmp_path / "ws"
    home.mkdir()
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A folder with a 2-layer random Llama plus SmolLM2's tokenizer and chat template (loads in ~1 s).

    For tests that need the real code paths (templates, padding, streaming, serving) but not good text.
    """
    import tiny_model as builder

    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    return str(builder.build(path, width=64, tied=False, max_positions=1024, init_range=0.5))


# Every test file belongs to one layer (issue 12): `pytest -m pages` runs the AppTests only, and so on.
# A file not listed is a unit test of the core. Browser tests carry their own `browser` marker.
LAYERS = {
    "cli": ("test_config_validation.py", "test_data_cli.py", "test_serve.py", "test_serve_hardening.py", "test_export.py",
            "test_persona.py", "test_multiprocess.py", "test_dp_uneven.py", "test_ollama.py", "test_quantize.py",
            "test_regress_cli.py", "test_hub.py", "test_compare_stats.py", "test_report_export_sections.py",
            "test_hub_provenance.py", "test_openai_retry.py"),
    "pages": ("test_app_shell.py", "test_home.py", "test_pages_data.py", "test_pages_sql.py", "test_pages_stats.py",
              "test_compare_page.py", "test_generate_page.py", "test_train_page.py", "test_playground.py",
              "test_ui_hardening.py", "test_feedback.py", "test_serve_panel.py", "test_vote_page.py",
              "test_regress_page.py", "test_models_page.py", "test_train_form_checks.py", "test_playground_memory.py",
              "test_compare_stats_page.py", "test_hub_search.py", "test_runs_page.py", "test_sweep_page.py"),
    "reliability": ("test_reliability.py", "test_import_fuzz.py", "test_import_hardening.py",
                    "test_store_hardening.py", "test_sql_hardening.py", "test_pickle_and_jobs.py",
                    "test_jobs_lifecycle.py", "test_job_pids.py", "test_damaged_files.py"),
}


def pytest_collection_modifyitems(config, items):
    layer_of = {name: layer for layer, names in LAYERS.items() for name in names}
    for item in items:
        path = Path(str(item.fspath))
        if path.parent.name == "browser":
            continue
        item.add_marker(getattr(pytest.mark, layer_of.get(path.name, "unit")))
