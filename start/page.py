"""Start here: a learner's path through attention

Attention explained as a story, on real models of ours: each step is one idea, one live view with the
model's own numbers, something to look for and a question only the view can answer — graded against
the model. Pick a step on the left (the URL keeps it: share a step by its link); every step opens the
page that goes deeper, and the map on the right takes you back to any idea in one click.
"""

from __future__ import annotations

import streamlit as st

from analysis.family import Family, Step
from families import FAMILIES
from models.checkpoints import CheckpointError
from start import START
from tasks import InputError
from views.inputs import md_escape
from views.layout import page_header
from views.quiz import ask, verdict

ANSWERS = "path_answers"  # session_state: step id → whether its last checked answer was right


def forward_old_links() -> None:
    """Before this page, "/" was the first family's page and links to it read "/?input=…": a URL whose
    every parameter is that page's (or an attention view's, ``view_<key>``) goes on to it, with them."""
    old = FAMILIES.get(START.forwards or "")
    params = list(st.query_params)
    if old is None or not any(k in old.url_inputs for k in params):
        return
    if all(k in old.url_inputs or k.startswith("view_") for k in params):
        st.switch_page(old.page, query_params={k: st.query_params.get_all(k) for k in params})


def path() -> list[tuple[Family, Step]]:
    """The story's steps of the registered families, in the story's order (an unregistered family's
    steps are skipped; a registered family must declare every step the story names for it)."""
    out = []
    for name, step_id in START.story:
        if name in FAMILIES:
            family = FAMILIES[name]
            (step,) = [s for s in family.steps if s.id == step_id]
            out.append((family, step))
    return out


def progress(steps: list[tuple[Family, Step]], answers: dict[str, bool]) -> list[str]:
    """Each step's caption in the path: its number, and whether this session answered it."""
    marks = {True: " · ✓ answered", False: " · ✗ answered, try again"}
    n = len(steps)
    return [f"Step {i + 1} of {n}{marks.get(answers.get(s.id), '')}" for i, (_, s) in enumerate(steps)]


def go(step_id: str) -> None:
    st.session_state["step"] = step_id


def show(family: Family, step: Step, number: int, answers: dict[str, bool]) -> None:
    """One step: the idea, the live view, what to look for, the question and the way deeper."""
    st.subheader(f"{number}. {step.idea}")
    st.markdown(step.explain)
    key = f"path_{step.id}"
    try:
        result = step.measure(family, step.query)
        quiz = step.quiz(result)
    except (CheckpointError, InputError, ValueError) as err:  # a model not installed, a preset it cannot read
        st.error(f"This step cannot run here: {md_escape(getattr(err, 'brief', str(err)))}")
        return
    step.view(result, key)
    st.markdown(f"**Look for:** {step.look_for}")
    graded = ask(quiz, key)
    if graded is not None and answers.get(step.id) != graded:
        answers[step.id] = graded
        st.rerun()  # the path, drawn before this step, marks it at once
    if step.id in answers:
        verdict(quiz, answers[step.id])
    st.page_link(family.page, label=f"Go deeper: {family.title} → {step.query[family.tab_key]}",
                 icon=family.icon, query_params=dict(step.query))  # fmt: skip
    st.caption(f"There: {step.deeper}.")


def material_map(steps: list[tuple[Family, Step]]) -> None:
    """Every idea with the views that show it, one click each (the pages in the step's URL state)."""
    st.markdown("**Map of the material**")
    for i, (family, step) in enumerate(steps):
        st.markdown(f"{i + 1}. {step.idea}  \n:gray[{family.icon} {family.title}]")
        views = {step.query[family.tab_key]: step.query, **step.more}
        for label, query in views.items():
            st.page_link(family.page, label=label, query_params=dict(query))


forward_old_links()
page_header(__doc__)
answers = st.session_state.setdefault(ANSWERS, {})
steps = path()
ideas = {s.id: s.idea for _, s in steps}
path_column, step_column, map_column = st.columns([1.1, 3.1, 1.4], gap="medium")
with path_column:
    chosen = st.radio("The path", list(ideas), format_func=ideas.get, key="step", bind="query-params",
                      captions=progress(steps, answers))  # fmt: skip
    done = [s for s in ideas if s in answers]
    st.metric("Steps answered", f"{len(done)} of {len(steps)}", f"{sum(answers[s] for s in done)} right",
              delta_color="off")  # fmt: skip
with step_column:
    at = list(ideas).index(chosen)
    show(*steps[at], at + 1, answers)
    back, forward = st.columns(2)
    if at > 0:
        back.button("← Previous step", on_click=go, args=(steps[at - 1][1].id,), key="path_back")
    if at + 1 < len(steps):
        forward.button("Next step →", on_click=go, args=(steps[at + 1][1].id,), key="path_next")
with map_column:
    material_map(steps)
