"""One generation batch: prompt a model with seed examples, parse, filter, keep for review.

A batch is a job folder generations/<id>/ with config.json (the resolved GenerateConfig),
batch.jsonl (one item per line), status.json (status, progress, counts) and job.log when it ran
detached. An item is {id, strategy, instruction, input, output, status, rule, reason, source}:
status is accepted | rejected | pending; rule names the automatic filter (or "parse" / "review")
and reason says why in one sentence. Review edits rewrite batch.jsonl; `accept` appends the
accepted items to a dataset as a new version whose lineage names the prompt version, backend,
model, seed dataset version and batch.

Strategies (each produces up to n items):
- new: self-instruct. Ask for n new instructions like a few sampled seeds, then (optionally) a
  second call answers each instruction that passed the filters.
- fill: answer seed records that have no output.
- paraphrase: reword seed instructions, keeping their input and output.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from tunelab import jobs
from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.evals.metrics import has_cjk, rouge_l
from tunelab.jsonio import read_json, read_jsonl, write_atomic, write_json
from tunelab.synth import filters, parse, prompts, seeds as seeds_mod

STRATEGIES = ("new", "fill", "paraphrase")
DEFAULT_BACKEND = "local:smollm2-135m-instruct"
Progress = Callable[[int, int, str], None]
ENDPOINT_KEY_ENV = "OPENAI_API_KEY"  # what an `openai:URL` backend sends (registry.ModelRef.api_key_env)

ANSWER_SYSTEM = "You are a helpful assistant. Answer briefly and directly."
ANSWER_SYSTEM_ZH = "你是一个乐于助人的助手。请简洁、直接地回答。"
PARAPHRASE = "Rewrite the following request in different words, keeping its meaning. Reply with the rewritten request only.\n\n{text}"
PARAPHRASE_ZH = "请换一种说法改写下面的问题，意思不变。只回复改写后的问题。\n\n{text}"


@dataclass
class GenerateConfig:
    """Everything one batch depends on; saved as the batch's config.json."""

    seeds: str = field(default="", metadata={"help": "Seed dataset NAME or file (Alpaca JSON/JSONL or self-instruct seed_tasks.jsonl)."})
    n: int = field(default=20, metadata={"help": "Items to generate per strategy (about 20 is a good review batch)."})
    backend: str = field(default=DEFAULT_BACKEND, metadata={"help": "local:MODEL or openai:BASE_URL[#model]."})
    template: str = field(default=prompts.DEFAULT_TEMPLATE, metadata={"help": "Prompt template name."})
    prompt_version: int | None = field(default=None, metadata={"help": "Template version (default: latest)."})
    strategies: list[str] = field(default_factory=lambda: ["new"], metadata={"help": "new, fill, paraphrase."})
    outputs: bool = field(default=True, metadata={"help": "Answer each new instruction with a second call."})
    seeds_per_prompt: int = field(default=3, metadata={"help": "Seed examples shown in each prompt."})
    items_per_prompt: int = field(default=8, metadata={"help": "Items asked for in each prompt; small models keep up with about 8."})
    max_rounds: int = field(default=3, metadata={"help": "Prompt rounds at most while fewer than n items came back."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature (variety)."})
    max_new_tokens: int = field(default=200, metadata={"help": "Token limit of each list answer."})
    answer_tokens: int = field(default=96, metadata={"help": "Token limit of each output (second call)."})
    batch_size: int = field(default=8, metadata={"help": "Prompts generated together."})
    seed: int = field(default=0, metadata={"help": "Random seed (seed sampling and generation)."})
    filters: filters.FilterConfig = field(default_factory=filters.FilterConfig)

    def __post_init__(self) -> None:
        if isinstance(self.filters, dict):
            self.filters = filters.FilterConfig(**self.filters)
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or not self.strategies:
            raise TuneLabError(f"unknown strategy {bad[0] if bad else '(none)'}: use {', '.join(STRATEGIES)}")
        if not 1 <= self.n <= 10000:
            raise TuneLabError(f"--n must be between 1 and 10000, got {self.n}")


def endpoint_env(backend: str, api_key: str = "") -> dict:
    """Environment overrides for a batch the dashboard launches with `backend`.

    A background batch inherits the dashboard server's environment, and an `openai:URL` endpoint
    sends $OPENAI_API_KEY as its bearer token. A URL typed in the browser can point anywhere (a
    visitor's own server, which would log the header), so such a batch gets only the key typed
    with that URL, or none: the server's own key never leaves for an address a page user chose.
    `tunelab generate --backend openai:URL` in a terminal still sends the shell's key (the user's
    own choice there).

    Args:
        backend: the batch's backend spec.
        api_key: the key the user typed for this endpoint in this browser session ("" = none).

    Returns:
        {ENDPOINT_KEY_ENV: api_key} for an endpoint; {} for a local model.
    """
    if backend_model(backend)[0] == "openai" or "://" in backend:
        return {ENDPOINT_KEY_ENV: api_key or ""}  # "" counts as no key (registry.api_key)
    return {}


def redact(text: str) -> str:
    """text with this process's endpoint key replaced by `***` (for errors kept in job files)."""
    key = os.environ.get(ENDPOINT_KEY_ENV) or ""
    return text.replace(key, "***") if len(key) >= 4 else text


def backend_model(spec: str) -> tuple[str, str]:
    """(backend kind, model) of a backend spec: local:X -> (local, X), openai:URL#m -> (openai, m or URL)."""
    kind, sep, rest = spec.partition(":")
    if kind == "openai" and sep:
        url, _, model = rest.partition("#")
        return "openai", model or url
    if kind in ("local", "llamacpp") and sep:
        return kind, rest
    return "auto", spec


# ------------------------------------------------------------------ batch folder


def batch_dir(batch_id: str):
    return jobs.job_dir("generations", batch_id)


def load_items(batch_id: str) -> list[dict]:
    return read_jsonl(batch_dir(batch_id) / "batch.jsonl")


def save_items(batch_id: str, items: list[dict]) -> None:
    """Rewrite batch.jsonl (review edits) atomically and refresh the counts in status.json."""
    import json

    d = batch_dir(batch_id)
    write_atomic(d / "batch.jsonl", "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items))
    jobs.write_status(d, counts=counts(items))


def load_config(batch_id: str) -> GenerateConfig:
    cfg = read_json(batch_dir(batch_id) / "config.json")
    if cfg is None:
        raise TuneLabError(f"unknown generation batch {batch_id!r}")
    return GenerateConfig(**cfg)


def counts(items: list[dict]) -> dict:
    c = {"generated": len(items), "accepted": 0, "rejected": 0, "pending": 0}
    for it in items:
        c[it.get("status", "pending")] = c.get(it.get("status", "pending"), 0) + 1
    return c


def create(cfg: GenerateConfig, batch_id: str | None = None) -> str:
    """Make the batch folder with its config and a queued status; returns the batch id."""
    batch_id = batch_id or jobs.new_id("gen")
    d = batch_dir(batch_id)
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / "config.json", asdict(cfg))
    jobs.write_status(d, id=batch_id, status="queued", created=time.time(), progress="",
                      template=cfg.template, prompt_version=cfg.prompt_version)
    return batch_id


def start_batch(cfg: GenerateConfig, into: str | None = None, api_key: str | None = None) -> str:
    """Check cfg, make a queued batch and run it in the background (`tunelab generate --job ID`).

    Args:
        cfg: what to generate.
        into: a dataset the accepted items are added to when the batch ends; None keeps them for review.
        api_key: the endpoint key typed in the browser ("" = none): the child then gets only that
            (endpoint_env). None (a terminal's --detach) passes this process's environment on.
    Returns:
        The batch id.
    """
    check(cfg)  # refuse a bad seed source or template here, not in the background
    batch_id = create(cfg)
    accept = ["--into", into] if into else ["--no-accept"]
    # The key travels in the child's environment only: not in argv (ps), config.json or job.log.
    env = None if api_key is None else endpoint_env(cfg.backend, api_key)
    jobs.launch("generations", batch_id, ["generate", "--job", batch_id, *accept, "--json"], env=env)
    return batch_id


# ------------------------------------------------------------------ generation


def _settings(cfg: GenerateConfig, tokens: int, offset: int = 0):
    from tunelab.models.generation import GenerationSettings

    return GenerationSettings(max_new_tokens=tokens, temperature=cfg.temperature, top_p=0.95,
                              seed=cfg.seed + offset)


def _item(strategy: str, instruction: str, input_: str = "", output: str = "", source: str = "") -> dict:
    return {"strategy": strategy, "instruction": instruction, "input": input_, "output": output,
            "status": "pending", "rule": "", "reason": "", "source": source}


def _rejected(strategy: str, text: str, reason: str) -> dict:
    return dict(_item(strategy, text), status="rejected", rule="parse", reason=reason)


def generate_new(
    backend, version: dict, pool: list[dict], cfg: GenerateConfig, progress: Progress
) -> tuple[list[dict], int]:
    """Self-instruct: prompts with sampled seeds -> parsed instructions, until n items came back.

    Returns:
        (items, surplus): parse failures are items too (rejected); surplus counts parsed items
        beyond n that were not kept.
    """
    rng = random.Random(cfg.seed)
    items: list[dict] = []
    found = surplus = 0
    for rnd in range(cfg.max_rounds):
        want = cfg.n - found
        if want <= 0:
            break
        ask = min(cfg.items_per_prompt, want)
        k = math.ceil(want / ask)
        convs = []
        for _ in range(k):
            shown = rng.sample(pool, min(cfg.seeds_per_prompt, len(pool)))
            convs.append([{"role": "user", "content": prompts.render(version, shown, ask)}])
        progress(rnd, cfg.max_rounds, f"round {rnd + 1}: {k} prompt(s) for {want} item(s)")
        gens = backend.chat(convs, _settings(cfg, cfg.max_new_tokens, rnd), batch_size=cfg.batch_size)
        for gen in gens:
            got = parse.parse(gen.text)
            new = [_item("new", it["instruction"], it["input"], it["output"]) for it in got.items]
            if new and gen.finish_reason == "length":
                new[-1].update(status="rejected", rule="parse", reason="cut off at the token limit")
            keep = new[: max(cfg.n - found, 0)]
            items.extend(keep)
            found += len(keep)
            surplus += len(new) - len(keep)
            items.extend(_rejected("new", r["text"], r["reason"]) for r in got.rejected)
    return items, surplus


def _answer_messages(item: dict) -> list[dict]:
    from tunelab.models.generation import records_to_messages

    zh = has_cjk(item["instruction"])
    return [{"role": "system", "content": ANSWER_SYSTEM_ZH if zh else ANSWER_SYSTEM},
            *records_to_messages({"instruction": item["instruction"], "input": item["input"]})]


def answer(backend, items: list[dict], cfg: GenerateConfig, progress: Progress) -> None:
    """Second call: write each item's output (in place)."""
    if not items:
        return
    progress(0, len(items), f"answering {len(items)} instruction(s)")
    gens = backend.chat([_answer_messages(it) for it in items], _settings(cfg, cfg.answer_tokens, 1000),
                        batch_size=cfg.batch_size)
    for it, gen in zip(items, gens):
        it["output"] = parse.parse_answer(gen.text)


def paraphrase(backend, pool: list[dict], cfg: GenerateConfig) -> list[dict]:
    """Reword up to n seed instructions; input and output are kept."""
    chosen = random.Random(cfg.seed).sample(pool, min(cfg.n, len(pool)))
    convs = [[{"role": "user", "content": (PARAPHRASE_ZH if has_cjk(s["instruction"]) else PARAPHRASE).format(
        text=s["instruction"])}] for s in chosen]
    gens = backend.chat(convs, _settings(cfg, 96, 2000), batch_size=cfg.batch_size)
    items = []
    for s, gen in zip(chosen, gens):
        text = parse.clean_text(parse.parse_answer(gen.text).split("\n")[0])
        it = _item("paraphrase", text, s.get("input") or "", s.get("output") or "", source=s["instruction"])
        score = rouge_l(text, s["instruction"])
        if score >= cfg.filters.max_paraphrase_similarity:
            it.update(status="rejected", rule="duplicate_seed",
                      reason=f"paraphrase too close to the original (ROUGE-L {score:.2f})")
        items.append(it)
    return items


def check(cfg: GenerateConfig) -> tuple[dict, seeds_mod.Seeds]:
    """The prompt version and seeds cfg names; raises TuneLabError when either is missing."""
    return prompts.get(cfg.template, cfg.prompt_version), seeds_mod.load(cfg.seeds)


def run(cfg: GenerateConfig, batch_id: str | None = None, progress: Progress | None = None) -> dict:
    """Generate one batch into generations/<id>/ and return its summary.

    Args:
        cfg: what to generate.
        batch_id: an existing queued batch folder (detached runs); a new one when None.
        progress: called as progress(done, total, message).

    Returns:
        {"batch", "generated", "accepted", "rejected": [{"text", "reason"}], "prompt_version", "template"}.
    """
    from tunelab.models.generation import get_backend

    if batch_id is None:
        check(cfg)
        batch_id = create(cfg)
    d = batch_dir(batch_id)

    def report(done: int, total: int, message: str) -> None:
        jobs.write_status(d, progress=message, done=done, total=total)
        if progress:
            progress(done, total, message)

    # SIGTERM (`jobs.stop`, a plain `kill`) raises jobs.Stopped in here: the batch is `stopped`.
    with jobs.running("generations", batch_id, redact=redact) as job:
        version, seeds = check(cfg)
        cfg.prompt_version = version["version"]
        write_json(d / "config.json", asdict(cfg))  # with the resolved prompt version
        report(0, 1, f"loading {cfg.backend}")
        backend = get_backend(cfg.backend)
        model = getattr(backend, "model", None)
        job.update(prompt_version=cfg.prompt_version, seed_dataset=seeds.source, seed_version=seeds.version,
                   model=model if isinstance(model, str) else backend_model(cfg.backend)[1])
        items, surplus = _generate(backend, version, seeds, cfg, report)
        for i, it in enumerate(items):
            it["id"] = i
        save_items(batch_id, items)
        job.update(progress="done", surplus=surplus)
    if job.status == "stopped":
        raise TuneLabError(f"generation batch {batch_id} was stopped")
    return dict(summary(batch_id, items, version), surplus=surplus)


def _generate(
    backend, version: dict, seeds: seeds_mod.Seeds, cfg: GenerateConfig, report: Progress
) -> tuple[list[dict], int]:
    """Every checked strategy's items, filtered; and the surplus of new items beyond n."""
    seed_texts = [s["instruction"] for s in seeds.records]
    items: list[dict] = []
    surplus = 0
    if "new" in cfg.strategies:
        new, surplus = generate_new(backend, version, seeds.records, cfg, report)
        filters.apply(new, seed_texts, cfg.filters, outputs=False)
        if cfg.outputs:
            answer(backend, [it for it in new if it["status"] == "accepted"], cfg, report)
            filters.apply_outputs(new, replace(cfg.filters, require_output=True))
        items += new
    if "fill" in cfg.strategies:
        todo = [s for s in seeds.records if not (s.get("output") or "").strip()][: cfg.n]
        fill = [_item("fill", s["instruction"], s.get("input") or "", source=s["instruction"]) for s in todo]
        answer(backend, fill, cfg, report)
        for it in fill:
            it["status"] = "accepted"
        filters.apply_outputs(fill, replace(cfg.filters, require_output=True))
        items += fill
    if "paraphrase" in cfg.strategies:
        report(0, 1, "paraphrasing seeds")
        para = paraphrase(backend, seeds.records, cfg)
        filters.apply(para, [], cfg.filters, kept=[it["instruction"] for it in items if it["status"] == "accepted"])
        items += para
    return items, surplus


def summary(batch_id: str, items: list[dict], version: dict) -> dict:
    """The CLI's answer for a batch."""
    c = counts(items)
    return {
        "batch": batch_id,
        "generated": c["generated"],
        "accepted": c["accepted"],
        "rejected": [{"text": it["instruction"], "reason": it["reason"]} for it in items if it["status"] == "rejected"],
        "prompt_version": version["version"],
        "template": version["name"],
    }


# ------------------------------------------------------------------ review results


def accept(batch_id: str, target: str) -> dict:
    """Append the batch's accepted items (not added before) to dataset target as a new version.

    Args:
        batch_id: a generation batch.
        target: dataset NAME (created when missing).

    Returns:
        {"name", "version", "added"}; lineage on the version names the prompt, backend, model,
        seed dataset version and batch.
    """
    items = load_items(batch_id)
    todo = [it for it in items if it.get("status") == "accepted" and not it.get("added_to")]
    if not todo:
        raise TuneLabError("no accepted items left to add in this batch")
    cfg = load_config(batch_id)
    st = jobs.read_status(batch_dir(batch_id)) or {}
    lineage = {
        "template": cfg.template, "prompt_version": cfg.prompt_version, "backend": cfg.backend,
        "model": st.get("model") or backend_model(cfg.backend)[1],
        "seed_dataset": st.get("seed_dataset", cfg.seeds), "seed_version": st.get("seed_version"), "batch": batch_id,
    }
    records = [{"instruction": it["instruction"], "input": it["input"], "output": it["output"]} for it in todo]
    entry = store.append_records(target, records, op="generate", params={"batch": batch_id, "added": len(records)},
                                 lineage=lineage)
    for it in todo:
        it["added_to"] = f"{target}@v{entry['version']}"
    save_items(batch_id, items)
    jobs.write_status(batch_dir(batch_id), accepted_into=f"{target}@v{entry['version']}")
    return {"name": target, "version": entry["version"], "added": len(records)}


def acceptance_by_version() -> list[dict]:
    """Acceptance rate of every reviewed item, per template version, over all batches."""
    rows: dict[tuple[str, int], dict] = {}
    for job in jobs.list_jobs("generations"):
        if job.get("status") != "completed":
            continue
        key = (job.get("template") or "", job.get("prompt_version") or 0)
        row = rows.setdefault(key, {"template": key[0], "version": key[1], "batches": 0, "items": 0, "accepted": 0})
        c = job.get("counts") or {}
        row["batches"] += 1
        row["items"] += c.get("generated", 0)
        row["accepted"] += c.get("accepted", 0)
    out = sorted(rows.values(), key=lambda r: (r["template"], r["version"]))
    for r in out:
        r["rate"] = round(r["accepted"] / r["items"], 3) if r["items"] else 0.0
    return out
