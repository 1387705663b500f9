"""Home: what TuneLab does, where this workspace stands in the five steps, and what to do next."""

import streamlit as st

from tunelab import workflow
from tunelab.ui import chat, layout
from tunelab.ui.i18n import t, tn

INTRO = (
    "Fine-tune a small language model on your own machine, no GPU needed. The work goes in five steps:\n"
    "1. **Data** — import instruction records (question → answer pairs), look at them, clean them, "
    "and keep some aside as a *test set* the model never trains on.\n"
    "2. **Generate** *(optional)* — let a model write more examples from a few of yours; you review each.\n"
    "3. **Compare** — score the candidate base models on your test set, to pick one and to have a baseline.\n"
    "4. **Train** — teach the chosen model your examples (LoRA: a small add-on, fast on a CPU) "
    "and watch the loss fall.\n"
    "5. **Use** — chat with the result, serve it as an API, export it."
)



def detail(step: workflow.Step) -> str:
    """What the workspace holds for a step, in the session's language, singular or plural."""
    if step.key == "split":
        return step.detail if step.count else t("no NAME-test dataset yet")
    if not step.count:
        return {"data": t("no dataset yet"), "generate": t("no generated batch yet"),
                "compare": t("no comparison report yet"), "train": t("no training run yet")}[step.key]
    if step.key == "data":
        return tn("{n} dataset", "{n} datasets", step.count) + t(", ") + tn(
            "{n} record", "{n} records", step.records)
    singular, plural = {"generate": ("{n} generation batch", "{n} generation batches"),
                        "compare": ("{n} comparison report", "{n} comparison reports"),
                        "train": ("{n} training run", "{n} training runs")}[step.key]
    return tn(singular, plural, step.count)


layout.init_state()
st.title("TuneLab")
st.markdown(t(INTRO))

steps = workflow.steps()
st.subheader(t("Your progress"))
for i, step in enumerate(steps, 1):
    c1, c2 = st.columns([3, 2], vertical_alignment="center")
    mark = ":material/check_circle:" if step.done else ":material/radio_button_unchecked:"
    c1.markdown(f"{mark} **{i}. {t(step.title)}** — {detail(step)}")
    c2.page_link(step.page, label=t("Open {page}", page=t(step.page.split("/")[-1][:-3].capitalize())),
                 icon=":material/arrow_forward:")
if waiting := chat.waiting_line():  # Playground ratings not trained on yet (none: nothing rated so far)
    st.markdown(f":material/thumbs_up_down: {waiting}")

nxt = workflow.next_step(steps)
if nxt:
    st.info(t("**Next:** {step}.", step=t(nxt.title).lower()), icon=":material/flag:")
else:
    st.success(t("Every step is done: try your model in the Playground."), icon=":material/celebration:")
    st.page_link("pages/playground.py", label=t("Open {page}", page=t("Playground")), icon=":material/chat:")
for text in workflow.warnings(steps):
    st.warning(t(text), icon=":material/warning:")
