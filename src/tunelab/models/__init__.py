"""Models: registry, resolving a MODEL argument, loading (GGUF -> safetensors cache), generation.

Importing the package registers every generation backend with `generation` (each backend module
calls `generation.register_backend`; generation never imports a backend), so any entry point that
uses a model (the CLI, the pages, the API server, a test) has them all.
"""

from tunelab.models import llamacpp, openai_backend  # noqa: F401  (they register their backends)
