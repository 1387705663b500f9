"""Start the dashboard: `python -m tunelab.ui.launch [streamlit run options]`.

Why not plain `streamlit run app.py`: Streamlit sees the top-level `pages/` folder and, until
app.py has called `st.navigation` once, serves the old folder-based navigation — so on a fresh
server a bookmarked URL such as /data would run pages/data.py without app.py (no sidebar, no
language switch, raw file names as the menu). Marking the app as navigation-based before the
server starts makes every URL go through app.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[3] / "app.py"


def main(argv: list[str] | None = None) -> None:
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
