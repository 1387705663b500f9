"""Waiting on a background job from a test: poll a predicate until it is truthy, or fail."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 240, every: float = 0.2, what: str = "condition"):
    """predicate()'s first truthy value, polled every `every` s; AssertionError after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")
