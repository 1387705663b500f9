"""Models: registry, resolving a MODEL argument, loading (GGUF -> safetensors cache), generation."""
