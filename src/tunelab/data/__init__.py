"""The Data step: formats, import, versioned store, search, SQL, stats, clean, split, export."""
