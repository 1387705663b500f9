"""Search the Hub (HF_ENDPOINT) for text-generation models: id, downloads, likes, parameters and weight size.

One `HfApi().list_models` call (sorted by downloads, optionally capped in parameters with the Hub's own
`num_parameters` filter). Offline (HF_HUB_OFFLINE=1) nothing is asked and one line says that searching
needs a network; every other failure is one TuneLabError line too (models/hub._friendly).
"""

from __future__ import annotations

from tunelab.errors import TuneLabError
from tunelab.models import hub

EXPAND = ["downloads", "likes", "safetensors", "pipeline_tag"]
# Bytes per parameter of each safetensors dtype (the Hub lists parameters per dtype).
DTYPE_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "BF16": 2, "F16": 2, "I16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
               "I8": 1, "U8": 1, "BOOL": 1}
OFFLINE = ("Searching the Hub needs a network: HF_HUB_OFFLINE=1 turns it off; start with HF_HUB_OFFLINE=0 "
           "(and HF_ENDPOINT for a mirror) to search.")


def search(query: str, limit: int = 20, max_params: float | None = None) -> list[dict]:
    """Text-generation models on the Hub whose id holds query, most downloaded first.

    Args:
        query: words in the model id ("" lists the most downloaded).
        limit: at most this many models.
        max_params: only models with at most this many parameters (the Hub's num_parameters filter).
    Returns:
        [{"id", "downloads", "likes", "params", "size_bytes"}] (params / size_bytes None when the Hub does
        not know the safetensors weights).
    Raises:
        TuneLabError: offline, an unreachable Hub, or any other refusal, in one line.
    """
    from huggingface_hub import HfApi

    if hub.offline():
        raise TuneLabError(OFFLINE)
    hub._sync_offline_flag()
    api = HfApi(endpoint=hub.endpoint(), token=hub.token())
    kwargs = {"num_parameters": f"max:{int(max_params)}"} if max_params else {}
    try:
        found = list(api.list_models(search=(query or "").strip() or None, pipeline_tag="text-generation",
                                     sort="downloads", limit=limit, expand=EXPAND, **kwargs))
    except Exception as exc:  # noqa: BLE001 - every Hub failure becomes one line
        raise hub._friendly(exc, "the model search", None) from None
    out = []
    for m in found:
        st = getattr(m, "safetensors", None)
        per_dtype = dict(getattr(st, "parameters", None) or {})
        size = sum(n * DTYPE_BYTES.get(d.upper(), 2) for d, n in per_dtype.items()) if per_dtype else None
        out.append({"id": m.id, "downloads": m.downloads or 0, "likes": m.likes or 0,
                    "params": getattr(st, "total", None) if st else None, "size_bytes": size})
    return out
