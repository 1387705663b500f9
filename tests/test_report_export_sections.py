"""`tunelab reports export REPORT out.html` carries the judge, the votes with calibration and the run's
regression suite from wherever they live (judge.json and votes.jsonl in the report folder, regress.json in
the run's folder), built for real through the CLI on a tiny model, and the page stays self-contained.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from chat_server import serve

from tunelab.evals import evaluate, votes

ROOT = Path(__file__).resolve().parents[1]


def _tunelab(env: dict, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "tunelab", *args], env=env, capture_output=True, text=True,
                          timeout=900, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _first_answer_shorter(model: str, prompt: str) -> str:
    """A judge that prefers the shorter answer (ties to A): some verdicts agree in both orders, some do not."""
    m = re.search(r"Answer A:\n(.*)\n\nAnswer B:\n(.*)\n\nWhich", prompt, re.S)
    return "A" if m is None or len(m.group(1)) <= len(m.group(2)) else "B"


def _text(page: str) -> str:
    """The page's visible text outside scripts, tags stripped and entities decoded."""
    body = re.sub(r"<script\b.*?</script>", "", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


@pytest.mark.slow
def test_html_export_holds_judge_votes_calibration_and_the_runs_regression_suite(workspace, tmp_path):
    import regress_parity
    import tiny_model

    env = dict(os.environ, TUNELAB_HOME=str(workspace), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    env.pop("HF_DATASETS_OFFLINE", None)
    model = tiny_model.build(tmp_path / "tiny", width=64, tied=False, max_positions=1024, init_range=0.5)
    tiny_model.dataset()
    out = _tunelab(env, "train", "--model", str(model), "--data", "tiny", "--method", "lora", "--max-steps", "2",
                   "--recipe", "manual", "--learning-rate", "0.05", "--no-auto-report", "--json")
    run = json.loads(out.stdout)["run"]
    regress = json.loads(_tunelab(env, "reports", "regress", run, "--tasks-dir",
                                  str(regress_parity.write(tmp_path / "parity")), "--json").stdout)
    assert (workspace / "runs" / run / "regress.json").exists()
    report = json.loads(_tunelab(env, "compare", "--models", f"{model},{run}", "--data", "tiny", "--limit", "8",
                                 "--max-new-tokens", "6", "--json").stdout)["report"]
    assert not (workspace / "reports" / report / "regress.json").exists()  # it lives with the run only
    with serve(_first_answer_shorter) as (url, _):
        judged = json.loads(_tunelab(env, "reports", "judge", report, "--judge", f"openai:{url}", "--json").stdout)
    # Two reviewers vote on every item (blind; each sees the pair in its own order).
    pair = judged["pair"]
    for voter, pick in (("Ann", 1), ("Bo", 0)):
        for it in votes.items(evaluate.load_report(report)):
            left, _right = votes.shown(report, voter, it)
            votes.cast(report, voter, it["item"], "A" if left == pair[pick] else "B", "too long" if pick else "")
    summary = json.loads(_tunelab(env, "reports", "votes", report, "--json").stdout)
    assert summary["votes"] == 16 and summary["judge_agreement"]["n"] > 0

    _tunelab(env, "reports", "export", report, "out.html")
    page = (workspace / "exports" / "out.html").read_text(encoding="utf-8")
    text = _text(page)
    # The judge: both orders, counts with Wilson intervals, position consistency, prompt version, calibration.
    assert "Judge" in text and judged["prompt_id"] in text
    c = judged["counts"]
    assert f"{judged['judge']}" in text and f"on {judged['n']} pairs, each asked in both orders" in text
    cons = judged["consistency"]
    assert f"{cons['k']} of {cons['n']}, {cons['rate'] * 100:.1f} %" in text
    win_ci = judged["ci"]["win"]
    assert f"{c['win'] / judged['n'] * 100:.1f} % [{win_ci[0] * 100:.1f}, {win_ci[1] * 100:.1f}]" in text
    # The votes and the judge's agreement with the reviewers (the same sentence `reports votes` prints).
    ag = summary["judge_agreement"]
    assert "Judge calibration" in text and ag["sentence"] in text
    assert f"{summary['votes']} votes from 2 reviewers" in text and "too long" in text
    kappa = f"{ag['kappa']:.2f}" if ag["kappa"] is not None else "n/a"
    assert kappa in text
    # The run's regression suite, read from runs/<run>/regress.json.
    (task,) = regress["tasks"]
    s = regress["summary"]
    assert f"run {run} vs base" in text
    assert f"{s['kept']} kept, {s['lost']} lost, {s['gained']} gained" in text
    assert f"{task['base']:.3f} ± {task['stderr']['base']:.3f}" in text
    assert f"{task['tuned']:.3f} ± {task['stderr']['tuned']:.3f}" in text
    assert f"{task['diff']:+.3f} [{task['ci'][0]:.3f}, {task['ci'][1]:.3f}]" in text and task["verdict"] in text
    # Self-contained: no attribute outside plotly's own script points at the network.
    markup = re.sub(r"<script\b.*?</script>", "", page, flags=re.S)
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", markup, re.I)
    assert re.search(r"<script[^>]*\bsrc=", page) is None  # every script inline
