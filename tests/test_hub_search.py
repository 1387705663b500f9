"""Hub search on the Models page (issue 24): the real huggingface_hub client against the stand-in Hub on
127.0.0.1 (tests/hub_server.py), and the page in AppTest: results with downloads, likes and size, an Add
button that feeds the ordinary download job, and one sentence when the Hub is off (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import pytest
from hub_server import StandInHub, make_repo
from pagetest import open_page, texts
from polling import wait_for

from tunelab.errors import TuneLabError
from tunelab.jsonio import read_json
from tunelab.models import hub_search

POPULARITY = {"acme/tiny-chat": (1200, 7), "acme/tiny-base": (90000, 41), "zeta/wide-chat": (500, 2)}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("search-repos")
    make_repo(root, "acme/tiny-chat", width=32)
    make_repo(root, "acme/tiny-base", width=32, init_range=0.3)
    make_repo(root, "zeta/wide-chat", width=64)
    with StandInHub(root, popularity=POPULARITY) as h:
        yield h


@pytest.fixture
def online(hub, tmp_path, monkeypatch):
    for k, v in {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": ""}.items():
        monkeypatch.setenv(k, v)
    return hub


def test_search_lists_text_generation_models_by_downloads_with_size(workspace, online):
    hub = online
    found = hub_search.search("chat")
    assert [m["id"] for m in found] == ["acme/tiny-chat", "zeta/wide-chat"]  # most downloaded first
    asked = hub.searches[-1]
    assert asked["search"] == ["chat"] and asked["pipeline_tag"] == ["text-generation"]
    assert asked["sort"] == ["downloads"]
    for m in found:
        st = hub.safetensors(m["id"])  # counted from the weights' own safetensors headers
        assert (m["downloads"], m["likes"]) == POPULARITY[m["id"]]
        assert m["params"] == st["total"] and m["size_bytes"] == 4 * st["parameters"]["F32"]
    assert found[1]["params"] > found[0]["params"]
    everything = hub_search.search("")
    assert [m["id"] for m in everything] == ["acme/tiny-base", "acme/tiny-chat", "zeta/wide-chat"]
    # The size cap goes to the Hub as num_parameters=max:N.
    small = hub_search.search("", max_params=found[0]["params"])
    assert hub.searches[-1]["num_parameters"] == [f"max:{found[0]['params']}"]
    assert "zeta/wide-chat" not in [m["id"] for m in small] and "acme/tiny-chat" in [m["id"] for m in small]


def test_search_offline_and_unreachable_say_so_in_one_line(workspace, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TuneLabError) as err:
        hub_search.search("qwen")
    assert str(err.value).startswith("Searching the Hub needs a network") and "\n" not in str(err.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(TuneLabError) as err:
        hub_search.search("qwen")
    assert str(err.value).startswith("cannot reach the Hub at http://127.0.0.1:9")


def _cell_texts(at) -> list[str]:
    return [e.value for e in at.text]


@pytest.mark.slow
def test_models_page_searches_the_hub_and_adds_a_hit(workspace, online):
    from tunelab.models import registry

    hub = online
    at = open_page("pages/models.py")
    at.text_input(key="models.query").set_value("tiny")
    next(b for b in at.button if b.label == "Search").click()
    at.run()
    assert not at.exception, at.exception
    cells = _cell_texts(at)
    assert cells.index("acme/tiny-base") < cells.index("acme/tiny-chat") and "zeta/wide-chat" not in cells
    assert "90,000" in cells and "1,200" in cells and "41" in cells
    params = hub.safetensors("acme/tiny-chat")["total"]
    assert f"{params / 1e6:.0f}M" in cells and f"{4 * params / 1e6:.1f} MB" in cells
    # Add: the same download job as the form; the model lands in the registry at the Hub's commit.
    at.button(key="models.add_hit.acme/tiny-chat").click()
    at.run()
    assert not at.exception, at.exception
    entry = wait_for(lambda: (read_json(registry._registry_file()) or {}).get("tiny-chat"), timeout=240,
                     what="the added model in the registry")
    assert entry["hub_id"] == "acme/tiny-chat" and entry["revision"] == hub.commit("acme/tiny-chat")


def test_models_page_offline_says_search_needs_a_network(workspace, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = open_page("pages/models.py")
    assert "Searching the Hub needs a network" in texts(at)
    assert not [b for b in at.button if b.label == "Search"]
