"""Must show (issue 16): the DEFAULT `tunelab train` teaches SmolLM2-135M a persona from 82 records.

data/samples/persona.jsonl teaches the name "Quokka" and the maker "Tidewater Labs" in English and
Chinese; persona_heldout.jsonl asks 12 paraphrased questions none of the training records holds.
With the old fixed defaults (1 epoch, packing, LoRA 2e-4: about 9 steps) the tuned model never said
the name; the auto recipe sizes the run to the data and must make it say so in >= 80% of answers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tunelab.cli import main as cli
from tunelab.train import runs

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def _answers(model: str, questions: list[str]) -> list[str]:
    from tunelab.models.generation import GenerationSettings, clear_cache, get_backend

    clear_cache()
    out = get_backend(model).chat([[{"role": "user", "content": q}] for q in questions],
                                  GenerationSettings(max_new_tokens=40, temperature=0))
    return [g.text for g in out]


@pytest.mark.slow
@pytest.mark.outcome  # ~6-13 min on 2 cores: `make test-outcomes`, not the default suite
def test_default_train_teaches_the_persona(workspace, capsys):
    assert cli(["data", "import", str(SAMPLES / "persona.jsonl"), "--name", "persona-train", "--json"]) == 0
    assert cli(["data", "import", str(SAMPLES / "persona_heldout.jsonl"), "--name", "persona-test", "--json"]) == 0
    capsys.readouterr()
    questions = [json.loads(line)["instruction"] for line in (SAMPLES / "persona_heldout.jsonl").open(encoding="utf-8")]
    assert len(questions) >= 10

    started = time.time()
    rc = cli(["train", "--model", "smollm2-135m-instruct", "--data", "persona-train", "--json"])  # no tuning flags
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    doc = json.loads(out)
    minutes = (time.time() - started) / 60
    st = runs.status(doc["run"])
    assert st["status"] == "completed"

    tuned = _answers(doc["run"], questions)
    base = _answers("smollm2-135m-instruct", questions)
    hits = sum("quokka" in a.lower() for a in tuned)
    base_hits = sum("quokka" in a.lower() for a in base)
    print(f"\npersona: {st['step']}/{st['max_steps']} steps in {minutes:.1f} min, best step {st.get('best_step')} "
          f"(eval loss {st.get('best_eval_loss')}), early stopped {bool(st.get('early_stopped'))}; "
          f"tuned {hits}/{len(questions)}, base {base_hits}/{len(questions)}", file=sys.stderr)
    for q, a in zip(questions, tuned):
        print(f"  {q!r} -> {a[:90]!r}", file=sys.stderr)
    assert base_hits == 0
    assert hits >= 0.8 * len(questions), tuned
