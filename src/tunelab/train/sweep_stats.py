"""Best vs second trial of a sweep, honestly: is the winner's eval loss lower by more than noise?

Each run logs its eval loss with `eval_loss_se`, the standard error over the held-out examples
(train/stopping.py). The two trials' final eval losses are compared with a two-sided z test on
diff / sqrt(se_best² + se_second²). Both runs evaluate the same held-out examples, so their errors are
correlated and this independent-samples test is conservative: "not significantly better" means the
sweep's ranking of these two may well be noise, not that they are equal.
"""

from __future__ import annotations

import math

ALPHA = 0.05
SIGNIFICANT = "Trial {best} is significantly better than trial {second} (diff {diff} ± {se}, p = {p})."
NOT_SIGNIFICANT = "Trial {best} is not significantly better than trial {second} (diff {diff} ± {se}, p = {p})."
NO_SE = "Trial {best} beats trial {second} by {diff}, but a run logged no standard error: no test possible."
TEMPLATES = (SIGNIFICANT, NOT_SIGNIFICANT, NO_SE)


def final_eval(rows: list[dict]) -> tuple[float | None, float | None]:
    """(eval_loss, eval_loss_se) of a run's last evaluated metrics row; (None, None) without one."""
    for r in reversed(rows):
        if r.get("eval_loss") is not None:
            se = r.get("eval_loss_se")
            return float(r["eval_loss"]), (float(se) if isinstance(se, (int, float)) else None)
    return None, None


def compare(best: tuple[int, float, float | None], second: tuple[int, float, float | None]) -> dict:
    """{"best", "second", "diff", "se", "z", "p", "significant", "sentence"} for two (trial number, loss, se).

    diff = second's loss - best's (>= 0 when best is the lower); se and z are None when a SE is missing.
    """
    from scipy.stats import norm

    (b, loss_b, se_b), (s, loss_s, se_s) = best, second
    diff = loss_s - loss_b
    se = z = p = None
    if se_b is not None and se_s is not None:
        se = math.sqrt(se_b ** 2 + se_s ** 2)
        z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
        p = float(2 * norm.sf(abs(z)))
    doc = {"best": b, "second": s, "diff": diff, "se": se, "z": z, "p": p,
           "significant": p is not None and p < ALPHA}
    doc["sentence"] = sentence(doc)
    return doc


def sentence(doc: dict, translate=None) -> str:
    """The verdict in words; translate(template, **values) renders it in another language (the UI's t)."""
    values = {"best": doc["best"], "second": doc["second"], "diff": f"{doc['diff']:.4f}"}
    if doc["se"] is None:
        template = NO_SE
    else:
        template = SIGNIFICANT if doc["significant"] else NOT_SIGNIFICANT
        values.update(se=f"{doc['se']:.4f}", p=f"{doc['p']:.3g}")
    return translate(template, **values) if translate else template.format(**values)


def best_vs_second(trials: list[dict], metrics) -> dict | None:
    """compare() of the two completed trials with the lowest values (show()'s rows); None with fewer than 2.

    metrics(run_id) gives a run's metrics rows (runs.metrics); the runs' final eval losses and SEs are used.
    """
    done = sorted((t for t in trials if t["status"] == "completed" and t["value"] is not None and t.get("run")),
                  key=lambda t: t["value"])
    if len(done) < 2:
        return None
    pair = []
    for t in done[:2]:
        loss, se = final_eval(metrics(t["run"]))
        pair.append((t["number"], t["value"] if loss is None else loss, se))
    return compare(pair[0], pair[1])
