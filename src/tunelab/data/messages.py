"""A dataset record as chat messages, and as the token ids training sees: written once, in the data layer.

Stats, training, its token preview, evaluation, generation and synthesis all turn a record into
messages here, so the Stats page counts exactly the tokens training will see for the same record.
The tokenizer is duck-typed (anything with `apply_chat_template` and `__call__`), so this module
needs neither transformers nor the models layer.
"""

from __future__ import annotations

# Between an instruction and its input inside one user turn (what every trained run has seen).
INPUT_SEPARATOR = "\n\n"


def to_messages(record: dict, with_output: bool = False) -> list[dict]:
    """A record as OpenAI-style chat messages: system, history turns, then instruction + input.

    Args:
        record: a record with instruction, input, system, history ([[user, assistant], ...]), output.
        with_output: append the record's output as the final assistant turn (what training learns).
    Returns:
        [{"role", "content"}, ...]; without the output unless with_output.
    """
    msgs = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    for pair in record.get("history") or []:
        user, assistant = (list(pair) + ["", ""])[:2]
        msgs += [{"role": "user", "content": user or ""}, {"role": "assistant", "content": assistant or ""}]
    user = record.get("instruction") or ""
    if record.get("input"):
        user = f"{user}{INPUT_SEPARATOR}{record['input']}" if user else record["input"]
    msgs.append({"role": "user", "content": user})
    if with_output:
        msgs.append({"role": "assistant", "content": record.get("output") or ""})
    return msgs


def split_text(tok, record: dict) -> tuple[str, str]:
    """(prompt text up to the assistant's answer, response text) after the tokenizer's chat template."""
    msgs = to_messages(record, with_output=True)
    prompt = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(msgs, tokenize=False)
    if full.startswith(prompt):
        return prompt, full[len(prompt):]
    # Templates that rewrite earlier turns once an answer follows: fall back to answer + EOS.
    return prompt, (record.get("output") or "") + (tok.eos_token or "")


def tokenize(tok, records: list[dict]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) per record, as training encodes them (one batched call each).

    Prompt and response are tokenised separately, so a BPE merge never spans the boundary where
    the loss starts; a count of the whole formatted text can differ from this by a token or two.
    """
    texts = [split_text(tok, r) for r in records]
    if not texts:
        return []
    prompts = tok([p for p, _ in texts], add_special_tokens=False)["input_ids"]
    answers = tok([a for _, a in texts], add_special_tokens=False)["input_ids"]
    return list(zip(prompts, answers))


def token_lengths(tok, records: list[dict]) -> list[int]:
    """Tokens per record before any cutoff, exactly as training counts them."""
    return [len(p) + len(a) for p, a in tokenize(tok, records)]
