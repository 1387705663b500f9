"""The llama-cpp-python library, when installed: shared by the llama.cpp backend and GGUF quantisation
(convert.py), so neither imports the other for it."""

from __future__ import annotations

import contextlib


def import_llama_cpp():
    """The llama_cpp module, or None when the optional extra is absent (or its compiled library cannot load)."""
    try:
        import llama_cpp
    except (ImportError, OSError):
        return None
    return llama_cpp


@contextlib.contextmanager
def quiet_llama_log():
    """Silence llama.cpp's log: a quantisation logs a line or two per tensor (the k-quant fallbacks among them,
    which the README explains); a failure still surfaces as llama_model_quantize's return code."""
    import logging

    logger = logging.getLogger("llama-cpp-python")  # llama-cpp-python routes llama.cpp's log through it
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)  # its table maps ggml INFO to WARNING and WARN to ERROR
    try:
        yield
    finally:
        logger.setLevel(level)
