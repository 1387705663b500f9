"""A user's own lm-eval task folder for the regression tests: an answer passes when its length is even.

A random tiny model passes about half the items, so scores, stderrs and paired differences are not all zero.
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["apple", "river", "stone", "cloud", "green", "seven", "light", "music", "paper", "house", "train", "bread",
         "chair", "ocean", "plant", "smile", "dream", "glass", "sugar", "tiger", "lemon", "night", "piano", "storm"]
YAML = """\
task: parity
dataset_path: json
dataset_kwargs:
  data_files: data/parity.jsonl
test_split: train
output_type: generate_until
doc_to_text: "{{prompt}}"
doc_to_target: ""
generation_kwargs:
  until: []
  do_sample: false
  max_gen_toks: 6
process_results: !function utils.even_length
metric_list:
  - metric: even
    aggregation: mean
    higher_is_better: true
metadata:
  checks: an even number of characters
"""


def write(folder: Path) -> Path:
    """The task folder (parity.yaml, utils.py, data/parity.jsonl with 24 prompts) under folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "parity.yaml").write_text(YAML)
    (folder / "utils.py").write_text("def even_length(doc, results):\n"
                                     "    return {'even': int(len(results[0]) % 2 == 0)}\n")
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "parity.jsonl").write_text("".join(json.dumps({"prompt": f"Tell me about {w}."}) + "\n"
                                                          for w in WORDS))
    return folder
