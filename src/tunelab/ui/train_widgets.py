"""Train page widgets: the config form, the token preview, live run charts and past-run comparison.

What is running is always read from the run folders (tunelab.train.runs), never from session
state, so a refresh or a second tab re-attaches to a run instead of starting or losing one.
"""

from __future__ import annotations

# The page's pieces, one module each; this module keeps the names pages/train.py and others use.
from tunelab.ui.train_form import FIELDS, LABELS, LORA_FIELDS, METHOD_LABELS, NONE, SKIP, config_form, relevant  # noqa: F401
from tunelab.ui.train_live import (  # noqa: F401
    EXPORT_LABELS, current_run, export_jobs, export_panel, live, playground_link, preference_report, smooth)
from tunelab.ui.train_recipe import command, estimate, preview, recipe_table, show_recipe, with_recipe  # noqa: F401
from tunelab.ui.train_runs import past_runs  # noqa: F401
