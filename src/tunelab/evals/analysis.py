"""A report's uncertainty: intervals per model, paired tests per pair, the one verdict, and slices.

`analyse` turns a report's rows into the keys the report document carries (see evals/stats.py for
the statistics): each model entry's "ci", and the document's "pairs", "verdict" (one sentence),
"verdict_detail" and "slices". Pairs are computed on the examples every model of the pair answered,
so a report still running compares what it has. The result is cached per report and content of its
rows: pages reload a report every few seconds, and the tests take a second or two.
"""

from __future__ import annotations

import hashlib
import math
import json
from collections import OrderedDict, defaultdict

import numpy as np

from tunelab.evals import metrics, stats
from tunelab.text import has_cjk

PRIMARY = "rouge_l"
SHOWN = metrics.METRICS  # rouge_l, bleu, exact_match
_CACHE: OrderedDict[str, dict] = OrderedDict()
_CACHE_SIZE = 32
# Length buckets (words; a CJK character counts as a word) for the prompt and the reference.
_BUCKETS = ((10, "short (≤10 words)"), (40, "medium (11-40 words)"), (None, "long (>40 words)"))
MIN_SLICE = 2  # a slice of fewer examples gets no interval and is listed last


def _bucket(text: str) -> str:
    n = len(metrics.tokenize(text))
    return next(label for top, label in _BUCKETS if top is None or n <= top)


def slice_tags(item: dict, data: str) -> dict[str, str]:
    """The slices one example belongs to: {column: value}.

    Derived from the example itself (language, prompt and reference length, turns, system prompt),
    plus its source dataset and every tag the example carries (`item["tags"]`: the record's other
    columns, e.g. a KTO label).
    """
    msgs = item.get("messages") or []
    users = sum(1 for m in msgs if m.get("role") == "user")
    system = next((m.get("content") for m in msgs if m.get("role") == "system"), "")
    tags = {
        "language": "Chinese" if has_cjk(item.get("prompt", "") + item.get("reference", "")) else "other",
        "prompt length": _bucket(item.get("prompt", "")),
        "reference length": _bucket(item.get("reference", "")),
        "turns": "multi-turn" if users > 1 else "single-turn",
        "system prompt": "with system prompt" if system else "no system prompt",
        "source": str(item.get("source") or data),
    }
    for k, v in (item.get("tags") or {}).items():
        if v is not None and not isinstance(v, (dict, list)):
            tags[str(k)] = str(v)
    return tags


def _key(report_id: str, models: list[str], by_model: dict, items: dict) -> str:
    h = hashlib.sha256(json.dumps([report_id, models, sorted(items)], default=str).encode())
    for m in models:
        for idx in sorted(by_model.get(m, {})):
            r = by_model[m][idx]
            h.update(f"{m}\0{idx}\0{r.get('output')}\0".encode())
    return h.hexdigest()


def _bleu_stats(rows: list[dict], items: dict) -> tuple[np.ndarray, str]:
    st, tok = metrics.bleu_stats([r["output"] for r in rows], [items[r["index"]]["reference"] for r in rows])
    return np.asarray(st, dtype=float), tok


def analyse(report_id: str, models: list[str], by_model: dict[str, dict[int, dict]], items: dict[int, dict],
            data: str, fixed_order: bool = False) -> dict:
    """Intervals, pairs, verdict and slices for a report's rows.

    Args:
        report_id: the report (part of the cache key).
        models: model names in report order.
        by_model: {model: {example index: row}} (rows carry the per-example metrics and "output").
        items: {example index: input item}.
        data: the dataset name (each example's source unless it names its own).
        fixed_order: the verdict is about the second model against the first whatever the outcome (a
            run's before/after report: "worse" means the tuned model lost); otherwise a significantly
            worse second model is told as the first one beating it.
    Returns:
        {"ci": {model: {metric: [lo, hi] or None}}, "pairs": [...], "verdict": str,
         "verdict_detail": {...} or None, "slices": [...]}.
    """
    key = _key(report_id, models, by_model, items) + str(fixed_order)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    out = _analyse(models, by_model, items, data, fixed_order)
    _CACHE[key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def _analyse(models: list[str], by_model: dict, items: dict, data: str, fixed_order: bool) -> dict:
    ci = {}
    for m in models:
        rows = [by_model[m][i] for i in sorted(by_model.get(m, {}))]
        ci[m] = {metric: None for metric in SHOWN}
        if not rows:
            continue
        one = stats.compare([m], {m: {k: [r[k] for r in rows] for k in ("rouge_l", "exact_match")}})["ci"][m]
        st, tok = _bleu_stats(rows, items)
        ci[m] = {"rouge_l": one["rouge_l"], "bleu": stats.corpus_ci(st, lambda v, t=tok: metrics.bleu_from_stats(v, t)),
                 "exact_match": one["exact_match"]}
    pairs = _pairs(models, by_model, items)
    means = {m: (float(np.mean([r[PRIMARY] for r in by_model[m].values()])) if by_model.get(m) else None)
             for m in models}
    head = stats.headline_pair(models, means, PRIMARY)
    detail = stats.verdict(pairs, *head, metric=PRIMARY) if head else None
    if detail and detail["label"] == "worse" and not fixed_order:
        head = (head[1], head[0])
        detail = stats.verdict(pairs, *head, metric=PRIMARY)
    if detail:
        sentence = detail["sentence"]
    elif models and means.get(models[0]) is not None:
        m = models[0]
        c = ci[m]["rouge_l"]
        span = f" [{c[0]:.2f}, {c[1]:.2f}]" if c else ""
        sentence = (f"{m} scores ROUGE-L {means[m]:.2f}{span} on {len(by_model[m])} examples "
                    f"(one model: nothing to compare it with).")
    else:
        sentence = "No answers yet."
    focus = head[0] if head else (models[0] if models else None)
    return {"ci": ci, "pairs": pairs, "verdict": sentence, "verdict_detail": detail,
            "slices": slices(models, by_model, items, data, focus)}


def _pairs(models: list[str], by_model: dict, items: dict) -> list[dict]:
    """Paired tests of every pair of models over every metric, Holm-adjusted together."""
    all_pairs = []
    for j in range(len(models)):
        for i in range(j):
            a, b = models[j], models[i]
            common = sorted(set(by_model.get(a, {})) & set(by_model.get(b, {})))
            if len(common) < 2:
                continue
            ra, rb = [by_model[a][k] for k in common], [by_model[b][k] for k in common]
            sa, tok = _bleu_stats(ra, items)
            sb, _ = _bleu_stats(rb, items)
            tests = {
                "rouge_l": stats.paired_mean([r["rouge_l"] for r in ra], [r["rouge_l"] for r in rb]),
                "bleu": stats.paired_corpus(sa, sb, lambda v, t=tok: metrics.bleu_from_stats(v, t)),
                "exact_match": stats.mcnemar([r["exact_match"] for r in ra], [r["exact_match"] for r in rb]),
            }
            all_pairs += [{"a": a, "b": b, "metric": k, **res} for k, res in tests.items()]
    for p, adj in zip(all_pairs, stats.holm([p["p"] for p in all_pairs])):
        p["p_adjusted"] = adj
    return [_rounded(p) for p in all_pairs]


def _rounded(pair: dict) -> dict:
    def r(v):
        return None if v is None or not math.isfinite(float(v)) else round(float(v), 6)

    out = dict(pair)
    for k in ("diff", "p", "p_adjusted", "mde", "sd"):
        out[k] = r(pair.get(k))
    out["ci"] = [r(x) for x in pair["ci"]] if pair.get("ci") else None
    return out


def slices(models: list[str], by_model: dict, items: dict, data: str, focus: str | None) -> list[dict]:
    """Metrics per slice of the examples, worst first (by the focus model's ROUGE-L), each with its interval.

    Returns:
        [{"column", "value", "n", "models": {model: {"rouge_l", "rouge_l_ci", "exact_match",
          "exact_match_ci", "n"}}}]; only columns with two or more values are sliced.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for idx, it in items.items():
        for col, val in slice_tags(it, data).items():
            groups[(col, val)].append(idx)
    values_per_col = defaultdict(set)
    for col, val in groups:
        values_per_col[col].add(val)
    out = []
    for (col, val), idxs in groups.items():
        if len(values_per_col[col]) < 2:
            continue
        per_model = {}
        for m in models:
            rows = [by_model[m][i] for i in idxs if i in by_model.get(m, {})]
            if not rows:
                continue
            rl, em = [r["rouge_l"] for r in rows], [r["exact_match"] for r in rows]
            per_model[m] = {"n": len(rows), "rouge_l": round(float(np.mean(rl)), 6),
                            "rouge_l_ci": stats.metric_ci("rouge_l", rl), "exact_match": round(float(np.mean(em)), 6),
                            "exact_match_ci": stats.metric_ci("exact_match", em)}
        if per_model:
            out.append({"column": col, "value": val, "n": len(idxs), "models": per_model})

    def worst_first(s: dict):
        m = s["models"].get(focus) or next(iter(s["models"].values()))
        return (s["n"] < MIN_SLICE, m["rouge_l"], s["column"], s["value"])

    return sorted(out, key=worst_first)


def preference_intervals(pref: dict) -> dict:
    """A preference run's accuracy shares with their 95 % Wilson intervals.

    Args:
        pref: {"base", "tuned", "pairs"}: the share of held-out pairs whose chosen answer each model finds
            likelier (evals/auto.measure_preference), or {"error"} (returned as is).
    Returns:
        pref plus "k": {"base", "tuned"} (pairs right: share x pairs) and "ci": {"base", "tuned"}
        (stats.wilson, scipy's Wilson score interval; None without pairs).
    """
    n = int(pref.get("pairs") or 0)
    if pref.get("error") or pref.get("base") is None or pref.get("tuned") is None:
        return pref
    k = {m: int(round(float(pref[m]) * n)) for m in ("base", "tuned")}
    return dict(pref, k=k, ci={m: stats.wilson(k[m], n) for m in k})


def share_text(share: float, ci: list[float] | None) -> str:
    """'0.83 [0.44, 0.97]' (a share and its interval, 2 decimals)."""
    return f"{share:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
