"""An OpenAI-compatible HTTP API over any TuneLab model (`tunelab serve`)."""
