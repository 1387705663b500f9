"""Start the dashboard: `python -m tunelab.ui.launch [streamlit run options]`.

Why not plain `streamlit run app.py`: Streamlit sees the top-level `pages/` folder and, until
app.py has called `st.navigation` once, serves the old folder-based navigation — so on a fresh
server a bookmarked URL such as /data would run pages/data.py without app.py (no sidebar, no
language switch, raw file names as the menu). Marking the app as navigation-based before the
server starts makes every URL go through app.py.

The dashboard has no login and its pages read and write the workspace, so it listens on
127.0.0.1 unless `--server.address` says otherwise (Streamlit's own default is every interface).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[3] / "app.py"
LOCAL = "127.0.0.1"
HOST_ENV = "TUNELAB_DASHBOARD_HOST"  # the address the server listens on, for pages (the voting page's access code)


def is_local(host: str) -> bool:
    """True when host only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str | None:
    """The one-line warning for a dashboard bound beyond this machine, or None for a local address."""
    if is_local(host):
        return None
    shown = host or "every interface"
    return (f"warning: the dashboard listens on {shown}: it is reachable by anyone on the network, "
            "with no authentication (anyone who can connect can read and change the workspace)")


def with_address(args: list[str]) -> tuple[list[str], str]:
    """args with `--server.address 127.0.0.1` added when they name no address; and the address."""
    for i, arg in enumerate(args):
        if arg.startswith("--server.address="):
            return args, arg.split("=", 1)[1]
        if arg == "--server.address" and i + 1 < len(args):
            return args, args[i + 1]
    return [*args, "--server.address", LOCAL], LOCAL


def main(argv: list[str] | None = None) -> None:
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    args, host = with_address(list(sys.argv[1:] if argv is None else argv))
    warning = exposure_warning(host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    os.environ[HOST_ENV] = host
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *args]
    cli.main()


if __name__ == "__main__":
    main()
