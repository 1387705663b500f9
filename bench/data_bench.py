"""Data-step benchmark: import, ranked search and paging over N Alpaca records vs a pandas baseline.

    .venv/bin/python bench/data_bench.py [--records 1000000] [--queries 50] [--fts-baseline]

Generates N records as JSONL in a temporary folder, then runs two child processes so each peak
RSS is its own: TuneLab (import into a temporary workspace, build the search index, 50 ranked
searches, 50 `data show` pages) and the baseline (pandas read_json(lines=True), str.contains over
the same queries, iloc pages). Prints the figures and appends a dated section to bench/RESULTS.md.
--fts-baseline also times the fts extension's own create_fts_index over the same segmented text,
the main step of the index build before it was written in plain SQL (about 600 s at 1M records);
it needs `pip install duckdb-extension-fts==<duckdb's version>`, no longer a TuneLab requirement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TARGETS = {"import_s": 60.0, "search_p95_ms": 200.0, "show_p95_ms": 50.0}
CJK_POOL = "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自之着去过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持音送"


def _words(n: int, seed: int) -> list[str]:
    """n pronounceable pseudo-words (so the tokenizer and stemmer see word-like text)."""
    import random

    rng = random.Random(seed)
    syll = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(syll) for _ in range(rng.randint(2, 4))))
    return sorted(out)


def generate(path: Path, n: int, seed: int = 0) -> list[str]:
    """Write n Alpaca records (Zipf-distributed vocabulary, 5% Chinese); return the vocabulary."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = np.array(_words(20000, seed))
    probs = 1.0 / np.arange(1, len(vocab) + 1)
    probs /= probs.sum()
    cjk = np.array(list(CJK_POOL))
    with open(path, "w", encoding="utf-8") as fh:
        for start in range(0, n, 10000):
            m = min(10000, n - start)
            ins = rng.choice(vocab, size=(m, 12), p=probs)
            out = rng.choice(vocab, size=(m, 50), p=probs)
            lines = []
            for i in range(m):
                rec = {"instruction": " ".join(ins[i]), "input": "", "output": " ".join(out[i])}
                if (start + i) % 20 == 0:
                    rec["instruction"] = "".join(rng.choice(cjk, size=15))
                    rec["output"] = "".join(rng.choice(cjk, size=60))
                lines.append(json.dumps(rec, ensure_ascii=False))
            fh.write("\n".join(lines) + "\n")
    return [str(w) for w in vocab]


def queries(vocab: list[str], k: int, seed: int = 1) -> list[str]:
    """k queries: one to three words from across the frequency range, every fifth one Chinese."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(k):
        if i % 5 == 4:
            out.append("".join(rng.sample(CJK_POOL, 2)))
        else:
            out.append(" ".join(vocab[int(rng.paretovariate(0.8)) % len(vocab)] for _ in range(rng.randint(1, 3))))
    return out


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def fts_extension_build(name: str) -> float:
    """Seconds for the fts extension's create_fts_index over the segmented text of a dataset."""
    import duckdb
    import pyarrow as pa

    from tunelab.data import search, store

    try:
        import duckdb_extension_fts
    except ImportError:
        raise SystemExit("--fts-baseline needs the fts extension: pip install "
                         f"duckdb-extension-fts=={duckdb.__version__}") from None
    ext = Path(duckdb_extension_fts.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "fts.duckdb_extension"
    folder = Path(tempfile.mkdtemp(prefix="fts-baseline-"))
    try:
        with duckdb.connect(str(folder / "fts.duckdb")) as con, duckdb.connect() as src:
            con.execute(f"LOAD '{ext}'")
            con.execute(f"CREATE TABLE docs (rid BIGINT, {', '.join(c + ' VARCHAR' for c in search.INDEXED)})")
            reader = src.execute(
                "SELECT file_row_number AS rid, instruction, input, output, system, "
                "array_to_string(flatten(history), ' ') AS history FROM read_parquet(?, file_row_number=true)",
                [str(store.version_path(name))]).to_arrow_reader(search.BATCH)
            for batch in reader:
                con.register("seg", pa.table({"rid": batch.column("rid"),
                                              **{c: search._segment_column(batch.column(c)) for c in search.INDEXED}}))
                con.execute("INSERT INTO docs SELECT * FROM seg")
            options = ("stemmer='porter', stopwords='english', lower=1, strip_accents=1, overwrite=1, "
                       f"ignore='{search.IGNORE}'")
            t = time.perf_counter()
            con.execute(f"PRAGMA create_fts_index('docs', 'rid', {', '.join(map(repr, search.INDEXED))}, {options})")
            return time.perf_counter() - t
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_tunelab(src: Path, qs: list[str], n: int, fts_baseline: bool = False) -> dict:
    """Child: import, index, search and page with TuneLab in a temporary workspace."""
    import random

    from tunelab.data import browse, search
    from tunelab.data.importer import import_path

    t = time.perf_counter()
    res = import_path(str(src), "bench")
    import_s = time.perf_counter() - t
    assert res["imported"] == n, res
    t = time.perf_counter()
    search.build_index("bench")
    index_s = time.perf_counter() - t
    search_ms = []
    for q in qs:
        t = time.perf_counter()
        search.search("bench", q, limit=20)
        search_ms.append(1000 * (time.perf_counter() - t))
    scan_ms = []
    for q in qs[:5]:  # the no-index fallback, for the FTS-vs-scan comparison in search.py
        t = time.perf_counter()
        search.search("bench", q, limit=20, method="scan")
        scan_ms.append(1000 * (time.perf_counter() - t))
    rng = random.Random(2)
    show_ms = []
    for _ in range(len(qs)):
        t = time.perf_counter()
        browse.show("bench", offset=rng.randrange(max(1, n - 20)), limit=20)
        show_ms.append(1000 * (time.perf_counter() - t))
    out = {"import_s": import_s, "index_s": index_s, "search_p95_ms": _p95(search_ms),
           "search_p50_ms": sorted(search_ms)[len(search_ms) // 2], "scan_p95_ms": _p95(scan_ms),
           "show_p95_ms": _p95(show_ms), "rss_mb": _rss_mb()}
    if fts_baseline:  # after the RSS reading: the baseline's memory is not TuneLab's
        out["fts_index_s"] = fts_extension_build("bench")
    return out


def run_baseline(src: Path, qs: list[str], n: int) -> dict:
    """Child: the pandas way — load everything, then str.contains per query."""
    import random

    import pandas as pd

    t = time.perf_counter()
    df = pd.read_json(src, lines=True)
    import_s = time.perf_counter() - t
    assert len(df) == n
    search_ms = []
    for q in qs:
        t = time.perf_counter()
        mask = False
        for col in ("instruction", "input", "output"):
            mask = mask | df[col].str.contains(q, case=False, regex=False)
        df[mask].head(20)
        search_ms.append(1000 * (time.perf_counter() - t))
    rng = random.Random(2)
    show_ms = []
    for _ in range(len(qs)):
        t = time.perf_counter()
        df.iloc[rng.randrange(max(1, n - 20)):][:20].to_dict("records")
        show_ms.append(1000 * (time.perf_counter() - t))
    return {"import_s": import_s, "search_p95_ms": _p95(search_ms), "show_p95_ms": _p95(show_ms),
            "rss_mb": _rss_mb()}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}, load avg {load}"


def child(kind: str, src: Path, qs_file: Path, n: int, home: Path, fts_baseline: bool = False) -> dict:
    env = dict(os.environ, TUNELAB_HOME=str(home), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, __file__, "--child", kind, "--src", str(src), "--queries-file", str(qs_file),
           "--records", str(n)] + (["--fts-baseline"] if fts_baseline else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{kind} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def index_row(ours: dict) -> str:
    fts = ours.get("fts_index_s")
    if fts is None:
        return f"| search index build (once per version) | {ours['index_s']:.1f} s | — | — | — |"
    return (f"| search index build (once per version); baseline: the fts extension's create_fts_index "
            f"alone | {ours['index_s']:.1f} s | {fts:.1f} s | {fts / ours['index_s']:.2f} | — |")


def report(n: int, gen_s: float, ours: dict, base: dict) -> str:
    def row(label, key, unit):
        v, b, target = ours[key], base.get(key), TARGETS.get(key)
        ratio = f"{b / v:.2f}" if b and v else ""
        ok = "" if target is None else (" ✅" if v <= target else " ❌")
        b_text = f"{b:.1f} {unit}" if b is not None else "—"
        t_text = f"≤ {target:g} {unit}{ok}" if target else "—"
        return f"| {label} | {v:.1f} {unit} | {b_text} | {ratio} | {t_text} |"

    lines = [
        f"## data_bench — {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"- machine: {machine()}",
        f"- records: {n:,} Alpaca (Zipf vocabulary, 5% Chinese), JSONL generated in {gen_s:.0f} s",
        "- baseline: pandas `read_json(lines=True)` + `str.contains` over instruction/input/output",
        "",
        "| figure | TuneLab | baseline | baseline ÷ TuneLab (>1: TuneLab better) | target |",
        "|---|---|---|---|---|",
        row("import", "import_s", "s"),
        row("ranked search p95 (50 queries)", "search_p95_ms", "ms"),
        row("`data show` page p95 (50 pages)", "show_p95_ms", "ms"),
        row("peak RSS", "rss_mb", "MB"),
        index_row(ours),
        f"| search p50 | {ours['search_p50_ms']:.1f} ms | — | — | — |",
        f"| unindexed scan fallback p95 (5 queries) | {ours['scan_p95_ms']:.1f} ms | — | — | — |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    ap.add_argument("--fts-baseline", action="store_true",
                    help="also time the fts extension's create_fts_index on the same text (slow: ~600 s at 1M)")
    ap.add_argument("--child", choices=("tunelab", "baseline"), help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--queries-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        qs = json.loads(Path(args.queries_file).read_text(encoding="utf-8"))
        if args.child == "tunelab":
            print(json.dumps(run_tunelab(Path(args.src), qs, args.records, args.fts_baseline)))
        else:
            print(json.dumps(run_baseline(Path(args.src), qs, args.records)))
        return
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-") as tmp:
        tmp_path = Path(tmp)
        src = tmp_path / "alpaca.jsonl"
        print(f"generating {args.records:,} records ...", file=sys.stderr)
        t = time.perf_counter()
        vocab = generate(src, args.records)
        gen_s = time.perf_counter() - t
        qs_file = tmp_path / "queries.json"
        qs_file.write_text(json.dumps(queries(vocab, args.queries), ensure_ascii=False), encoding="utf-8")
        print("running TuneLab ...", file=sys.stderr)
        ours = child("tunelab", src, qs_file, args.records, tmp_path / "ws", args.fts_baseline)
        print("running the pandas baseline ...", file=sys.stderr)
        base = child("baseline", src, qs_file, args.records, tmp_path / "ws")
    text = report(args.records, gen_s, ours, base)
    print(text)
    if not args.no_write:
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(("\n" if RESULTS.exists() and RESULTS.stat().st_size else "# Benchmark results\n\n") + text)
        _overview_rows(ours, base)


def _overview_rows(ours: dict, base: dict) -> None:
    """The same figures as rows for `make bench`'s overview table (bench/results/data.json)."""
    sys.path.insert(0, str(RESULTS.parent))
    from _common import row

    rows = [row("import", ours["import_s"], base.get("import_s"), "s", "≤ 60 s", higher_is_better=False),
            row("ranked search p95", ours["search_p95_ms"], base.get("search_p95_ms"), "ms", "≤ 200 ms",
                higher_is_better=False),
            row("data show page p95", ours["show_p95_ms"], base.get("show_p95_ms"), "ms", "≤ 50 ms",
                higher_is_better=False),
            row("peak RSS", ours["rss_mb"], base.get("rss_mb"), "MB", "", higher_is_better=False),
            row("search index build", ours["index_s"], ours.get("fts_index_s"), "s", "", higher_is_better=False)]
    out = RESULTS.parent / "results"
    out.mkdir(exist_ok=True)
    (out / "data.json").write_text(json.dumps({"name": "data", "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
                                               "machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
