"""Credentials in an endpoint URL (`http://user:KEY@host/v1`): used, never stored or shown.

A MODEL or judge given as such a URL is stored and listed as `http://***@host/v1` (`redact`); the
secret (the password, or the user part alone: `http://TOKEN@host`) is sent as the endpoint's bearer
key through an environment variable named after the bare URL (`key_env`), set in this process only:
the report, judge and generation jobs it launches inherit it, no file ever holds it. A process that
later resolves the redacted form finds the key in that variable, or gets the endpoint's 401.
"""

from __future__ import annotations

import hashlib
import re

REDACTED = "***"
USERINFO = re.compile(r"(?P<scheme>https?://)(?P<userinfo>[^/@\s?#]+)@", re.IGNORECASE)


def redact(text: str) -> str:
    """text with the userinfo of every http(s) URL in it replaced by ***."""
    return USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text) if isinstance(text, str) else text


def split_credentials(url: str) -> tuple[str, str | None]:
    """(the URL without userinfo, its secret or None); a redacted URL's secret is REDACTED."""
    m = USERINFO.search(url)
    if not m or m.start() != 0:
        return url, None
    user, _, password = m["userinfo"].partition(":")
    return m["scheme"] + url[m.end():], (password or user)


def key_env(bare_url: str) -> str:
    """The environment variable that carries the key of the endpoint at bare_url (no userinfo)."""
    return "TUNELAB_ENDPOINT_KEY_" + hashlib.sha256(bare_url.rstrip("/").encode()).hexdigest()[:12].upper()
