"""The exercises: every solution passes its checker, typical wrong answers fail it with a hint,
an untouched stub is "not done yet" (no error), and the questions and solutions are wired.

Wrong answers come in two kinds: generic ones built from the solution for every checker (a
missing ``return``, an all-NaN result, a transposed result) and the mistakes particular to one
exercise (a flipped sign, a mean instead of a sum, a generator that drops its state...).
"""

from __future__ import annotations

import ast
import importlib
import math
import re
from pathlib import Path

import pytest
import torch
from IPython.core.formatters import DisplayFormatter

from nlbook import exercises
from nlbook.exercises import _core, solutions

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHAPTER_NOTEBOOK = {
    "levels": "00_levels.py",
    "associative_memory": "01_associative_memory.py",
    "nested_optimizers": "02_nested_optimizers.py",
    "muon_m3": "02b_muon_m3.py",
    "continuum_memory": "03_continuum_memory.py",
    "self_modifying": "04_self_modifying.py",
    "hope_block": "05_hope_block.py",
    "tiny_shakespeare": "06_tiny_shakespeare.py",
    "what_memory_buys": "07_what_memory_buys.py",
}
EXERCISES = [(chapter, name) for chapter, table in solutions.BY_CHAPTER.items()
             for name in table]
# Exercises whose result is a matrix (or batch of matrices) that can come back transposed.
TRANSPOSABLE = {"hebbian_step", "ns_step",
                "delta_step", "titans_step", "chunk_update", "dgd_step", "causal_conv",
                "block_forward", "top_p_filter"}


def _module(chapter: str):
    return importlib.import_module(f"nlbook.exercises.{chapter}")


def _checker(chapter: str, name: str):
    return getattr(_module(chapter), f"check_{name}")


def _map_result(result, change):
    """Apply ``change`` to every tensor or number the learner's function returns."""
    if isinstance(result, tuple):
        return tuple(_map_result(item, change) for item in result)
    if isinstance(result, list):
        return [change(float(item)) for item in result]
    if isinstance(result, torch.Tensor):
        return change(result)
    return change(float(result))


def _nan(value):
    if isinstance(value, torch.Tensor):
        return torch.full(value.shape, float("nan"), dtype=torch.float64)
    return float("nan")


def _wrong(solution, change):
    return lambda *args: _map_result(solution(*args), change)


@pytest.fixture(autouse=True)
def _float64_free():
    """Checkers must not depend on the notebook's default dtype; restore it after each test."""
    default = torch.get_default_dtype()
    yield
    torch.set_default_dtype(default)


# ----------------------------------------------------------------------------- generic answers

@pytest.mark.parametrize(("chapter", "name"), EXERCISES)
def test_every_solution_passes_its_checker_and_shows_no_echo(chapter, name, capsys):
    result = _checker(chapter, name)(solutions.BY_CHAPTER[chapter][name])
    assert result and result.passed
    assert "correct" in capsys.readouterr().out
    # The result object displays nothing in Jupyter: no `Out[...]: True` under a checker cell.
    assert DisplayFormatter().format(result) == ({}, {})


@pytest.mark.parametrize(("chapter", "name"), EXERCISES)
def test_an_untouched_stub_is_not_done_yet_and_raises_nothing(chapter, name, capsys):
    def stub(*args):
        raise NotImplementedError("your code here")

    result = _checker(chapter, name)(stub)
    assert not result
    printed = capsys.readouterr().out
    assert "not done yet" in printed and f'solution("{name}")' in printed
    assert DisplayFormatter().format(result) == ({}, {})


@pytest.mark.parametrize(("chapter", "name"), EXERCISES)
def test_a_missing_return_fails_with_a_hint(chapter, name):
    with pytest.raises(AssertionError, match=r"returned None.*`return`"):
        _checker(chapter, name)(lambda *args: None)


@pytest.mark.parametrize(("chapter", "name"), EXERCISES)
def test_an_all_nan_answer_fails_with_a_hint(chapter, name):
    nan_answer = _wrong(solutions.BY_CHAPTER[chapter][name], _nan)
    with pytest.raises(AssertionError, match=r"NaN") as caught:
        _checker(chapter, name)(nan_answer)
    assert "Typical causes" in str(caught.value)


@pytest.mark.parametrize(("chapter", "name"), [(c, n) for c, n in EXERCISES
                                               if n in TRANSPOSABLE])
def test_a_transposed_result_fails_with_a_hint(chapter, name):
    transposed = _wrong(solutions.BY_CHAPTER[chapter][name], lambda value: value.mT)
    with pytest.raises(AssertionError, match="transpose"):
        _checker(chapter, name)(transposed)


def test_a_checker_wants_the_function_itself():
    from nlbook.exercises import associative_memory as ex

    with pytest.raises(TypeError, match=r"delta_step.*without calling it"):
        ex.check_delta_step(torch.zeros(3))


# ----------------------------------------------------------------------------- particular mistakes

def _stream_greedy_variants():
    def state_dropping(model, prompt, n):  # the bug check_stream_greedy used to accept
        with torch.no_grad():
            logits, _ = model.stream(prompt)
            for _ in range(n):
                token = logits[:, -1].argmax(-1, keepdim=True)
                prompt = torch.cat([prompt, token], dim=1)
                logits, _ = model.stream(token)  # the state is dropped
        return prompt

    def stale_state(model, prompt, n):  # keeps the prompt's state, never the new ones
        with torch.no_grad():
            logits, first_state = model.stream(prompt)
            for _ in range(n):
                token = logits[:, -1].argmax(-1, keepdim=True)
                prompt = torch.cat([prompt, token], dim=1)
                logits, _ = model.stream(token, first_state)
        return prompt

    def rereads(model, prompt, n):  # re-reads the whole text with the state
        with torch.no_grad():
            logits, state = model.stream(prompt)
            for _ in range(n):
                prompt = torch.cat([prompt, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
                logits, state = model.stream(prompt, state)
        return prompt

    def no_stream(model, prompt, n):  # a full forward pass per token
        with torch.no_grad():
            for _ in range(n):
                logits, _ = model(prompt)
                prompt = torch.cat([prompt, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return prompt

    def calls_generate(model, prompt, n):
        return model.generate(prompt, n, temperature=0.0)

    def first_position(model, prompt, n):  # argmax of the first position, not the last
        with torch.no_grad():
            logits, state = model.stream(prompt)
            for _ in range(n):
                token = logits[:, 0].argmax(-1, keepdim=True)
                prompt = torch.cat([prompt, token], dim=1)
                logits, state = model.stream(token, state)
        return prompt

    def detached_state(model, prompt, n):  # a detached copy of the state is still the state
        with torch.no_grad():
            logits, state = model.stream(prompt)
            for _ in range(n):
                token = logits[:, -1].argmax(-1, keepdim=True)
                prompt = torch.cat([prompt, token], dim=1)
                logits, state = model.stream(token, state.detach())
        return prompt

    return (state_dropping, stale_state, rereads, no_stream, calls_generate, first_position,
            detached_state)


def test_check_stream_greedy_rejects_a_generator_that_drops_its_state():
    from nlbook.exercises import hope_block as ex

    (state_dropping, stale_state, rereads, no_stream, calls_generate, first_position,
     detached) = _stream_greedy_variants()
    for wrong, hint in [(state_dropping, "did not get the state"),
                        (stale_state, "did not get the state"),
                        (rereads, "feed only the new token"),
                        (no_stream, "feed only the new token"),
                        (calls_generate, "called model.generate"),
                        (first_position, "LAST position")]:
        with pytest.raises(AssertionError, match=hint):
            ex.check_stream_greedy(wrong)
    assert ex.check_stream_greedy(detached)


def _delta_step_hebbian(S, k, v, beta, decay):
    return decay * S + beta * torch.outer(k, v)


def _delta_step_undecayed_erase(S, k, v, beta, decay):
    return decay * S - beta * torch.outer(k, k @ S - v)


def _titans_swapped(M, S, k, v, lr, momentum, forget):
    return tuple(reversed(solutions.titans_step(M, S, k, v, lr, momentum, forget)))


def _chunk_mean(W, inputs, targets, rate):
    return W - rate * (inputs @ W.T - targets).T @ inputs / inputs.shape[0]


def _chunk_sequential(W, inputs, targets, rate):
    for x, y in zip(inputs, targets, strict=True):
        W = W - rate * torch.outer(W @ x - y, x)
    return W


def _causal_conv_reversed(x, weight):
    return solutions.causal_conv(x, weight.flip(-1))


def _causal_conv_centred(x, weight):  # pads on both sides: sees the future
    padded = torch.nn.functional.pad(x, (0, 0, 2, 1))
    return sum(weight[:, j] * padded[:, j:j + x.shape[1]] for j in range(weight.shape[1]))


def _block_without_residual(block, x, targets, loss_fn):
    hidden, _ = block.conv(block.norm(x))
    memory, _ = block.titans(hidden)
    return block.cms(memory, targets, loss_fn=loss_fn).output


def _top_p_drops_crossing(logits, top_p):
    probabilities = torch.softmax(logits, dim=-1)
    sorted_probabilities, order = torch.sort(probabilities, dim=-1, descending=True)
    keep = torch.zeros_like(probabilities, dtype=torch.bool).scatter(
        -1, order, sorted_probabilities.cumsum(-1) <= top_p)
    return logits.masked_fill(~keep, float("-inf"))


def _anbn_by_counts(string):
    return string.count("a") == string.count("b")


def _anbn_in_order(string):
    return re.fullmatch("a+b+", string) is not None


def _anbn_with_empty(string):
    half = len(string) // 2
    return string == "a" * half + "b" * half


def _recovery_against_before(steps, loss_a, phase_ends):
    at = dict(zip(steps, loss_a, strict=True))
    before, after, end = (at[step] for step in phase_ends)
    return after - before, end - before


def _forgetting_from_the_peak(steps, loss_a, phase_ends):
    in_b = [loss for step, loss in zip(steps, loss_a, strict=True)
            if phase_ends[0] < step <= phase_ends[1]]
    at = dict(zip(steps, loss_a, strict=True))
    return max(in_b) - at[phase_ends[0]], at[phase_ends[1]] - at[phase_ends[2]]


def _forgetting_flipped(steps, loss_a, phase_ends):
    forgetting, recovery = solutions.forgetting_and_recovery(steps, loss_a, phase_ends)
    return -forgetting, recovery


PARTICULAR_MISTAKES = [
    ("levels", "hebbian_step", lambda S, k, v, b: S - b * torch.outer(k, v), "wrong sign"),
    ("levels", "hebbian_step", lambda S, k, v, b: b * torch.outer(k, v), "old memory"),
    ("levels", "hebbian_step", lambda S, k, v, b: S + b * torch.outer(v, k), "transposed"),
    ("associative_memory", "delta_step",
     lambda S, k, v, b, d: d * S - b * torch.outer(k, k @ S - v).T, "transposed"),
    ("muon_m3", "ns_step", lambda X: 1.5 * X + 0.5 * X @ X.T @ X, "wrong sign"),
    ("muon_m3", "ns_step", lambda X: 1.5 * X - 0.5 * X.T @ X @ X, "transposed"),
    ("levels", "levels_of", lambda f: [sorted(set(f)).index(x) + 1 for x in f], "reversed"),
    ("levels", "levels_of", lambda f: list(range(1, len(f) + 1)), "share one level|sort"),
    ("associative_memory", "delta_step", _delta_step_hebbian, "Hebbian"),
    ("associative_memory", "delta_step", _delta_step_undecayed_erase, "decayed memory"),
    ("associative_memory", "delta_step", lambda S, k, v, b, d: S * float("nan"), "NaN"),
    ("associative_memory", "titans_step", _titans_swapped, "swapped"),
    ("nested_optimizers", "momentum_step", lambda m, g, lr, a: a * m + lr * g, "sign"),
    ("nested_optimizers", "momentum_step", lambda m, g, lr, a: -(a * m - lr * g), "sign"),
    ("nested_optimizers", "gradients_for_mass",
     lambda beta, fraction: solutions.gradients_for_mass(beta, fraction) - 1, "Off by one"),
    ("nested_optimizers", "gradients_for_mass",
     lambda beta, fraction: math.log(1 - fraction) / math.log(beta), "whole number"),
    ("nested_optimizers", "delta_momentum_step",
     lambda m, g, lr, a: a * m - (m @ g) * g - lr * g, "normalise"),
    ("continuum_memory", "chunk_update", _chunk_mean, "divided by C"),
    ("continuum_memory", "chunk_update", _chunk_sequential, "inside the chunk"),
    ("continuum_memory", "chunk_update", lambda W, x, y, rate: W, "did not change"),
    ("continuum_memory", "update_steps",
     lambda length, chunk: list(range(chunk - 1, length, chunk)), "off by one"),
    ("continuum_memory", "update_steps",
     lambda length, chunk: list(range(chunk, length + chunk, chunk)), "partial chunk"),
    ("continuum_memory", "update_steps", lambda length, chunk: 3, "list of token counts"),
    ("self_modifying", "effective_step", lambda lr, x: lr / (1 + lr), "paper's"),
    ("self_modifying", "effective_step", lambda lr, x: lr / (1 + lr * float(x.norm())),
     "squared norm"),
    ("self_modifying", "dgd_step", lambda W, x, g, lr: W - lr * torch.outer(g, x), "plain GD"),
    ("self_modifying", "dgd_step",
     lambda W, x, g, lr: W - lr / (1 + lr * x.dot(x)) * torch.outer(g, x), "erase term"),
    ("self_modifying", "dgd_step",
     lambda W, x, g, lr: W @ (torch.eye(3, dtype=W.dtype) - torch.outer(x, x))
     - lr * torch.outer(g, x), "NeurIPS"),
    ("hope_block", "causal_conv", _causal_conv_reversed, "reversed"),
    ("hope_block", "causal_conv", _causal_conv_centred, "not causal"),
    ("hope_block", "block_forward", _block_without_residual, "residual"),
    ("tiny_shakespeare", "bits_per_char", lambda nats: nats * math.log(2.0), "multiplied"),
    ("tiny_shakespeare", "bits_per_char", math.exp, "perplexity"),
    ("tiny_shakespeare", "top_p_filter", _top_p_drops_crossing, "crosses p"),
    ("tiny_shakespeare", "bigram_loss",
     lambda ids, vocab: solutions.bigram_loss(ids, vocab) / math.log(2.0), "bits"),
    ("tiny_shakespeare", "bigram_loss", lambda ids, vocab: -solutions.bigram_loss(ids, vocab),
     "sign"),
    ("what_memory_buys", "is_anbn", _anbn_by_counts, "order matters"),
    ("what_memory_buys", "is_anbn", _anbn_in_order, "counts must be equal"),
    ("what_memory_buys", "is_anbn", _anbn_with_empty, "n ≥ 1"),
    ("what_memory_buys", "is_anbn", lambda string: "yes", "True or False"),
    ("what_memory_buys", "forgetting_and_recovery", _recovery_against_before,
     "not with the loss before B"),
    ("what_memory_buys", "forgetting_and_recovery", _forgetting_from_the_peak, "END of each"),
    ("what_memory_buys", "forgetting_and_recovery", _forgetting_flipped, "wrong sign"),
    ("what_memory_buys", "forgetting_and_recovery", lambda steps, loss, ends: 1.0, "pair"),
]


@pytest.mark.parametrize(("chapter", "name", "wrong", "hint"), PARTICULAR_MISTAKES,
                         ids=[f"{name}-{hint}" for _, name, _, hint in PARTICULAR_MISTAKES])
def test_a_typical_mistake_fails_with_its_hint(chapter, name, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        _checker(chapter, name)(wrong)


@pytest.mark.parametrize("chapter", list(CHAPTER_NOTEBOOK))
def test_hints_are_whole_sentences_that_name_the_call(chapter):
    """A hint names the call that went wrong, so a learner knows which case failed."""
    name = next(iter(solutions.BY_CHAPTER[chapter]))
    with pytest.raises(AssertionError) as caught:
        _checker(chapter, name)(lambda *args: None)
    assert str(caught.value).startswith(name)


# ----------------------------------------------------------------------------- questions, solutions

QUESTIONS = [(chapter, name) for chapter in CHAPTER_NOTEBOOK
             for name in _module(chapter).QUESTIONS]


def test_every_chapter_has_predict_then_run_questions():
    for chapter in CHAPTER_NOTEBOOK:
        assert len(_module(chapter).QUESTIONS) >= 2, chapter


@pytest.mark.parametrize(("chapter", "name"), QUESTIONS)
def test_answer_waits_for_a_prediction_then_judges_it(chapter, name, capsys):
    ex = _module(chapter)
    question = ex.QUESTIONS[name]
    ex.answer(name)
    waiting = capsys.readouterr().out
    assert "not done yet" in waiting
    assert " ".join(question.explanation.split()[:6]) not in " ".join(waiting.split())
    ex.answer(name, question.correct.upper())
    assert "is right" in capsys.readouterr().out
    wrong = next(letter for letter in question.choices if letter != question.correct)
    ex.answer(name, f"({wrong})")
    judged = capsys.readouterr().out
    assert "not what happened" in judged and f"({question.correct})" in judged
    exercises.reveal(name)  # the package-level reveal finds the chapter
    assert "Answer" in capsys.readouterr().out
    with pytest.raises(ValueError, match="prediction"):
        ex.answer(name, "z")


def test_unknown_names_are_refused_with_the_known_ones():
    from nlbook.exercises import associative_memory as ex

    with pytest.raises(ValueError, match="overwrite"):
        ex.answer("no such question", "a")
    with pytest.raises(ValueError, match="delta_step"):
        ex.solution("no_such_exercise")
    with pytest.raises(ValueError, match="name"):
        exercises.solution("no_such_exercise")


@pytest.mark.parametrize(("chapter", "name"), EXERCISES)
def test_solution_prints_code_that_passes_the_checker(chapter, name, capsys):
    ex = _module(chapter)
    ex.solution(f"my_{name}")  # the notebooks' old names work too
    printed = capsys.readouterr().out
    assert f"def {name}(" in printed
    namespace: dict = {}
    exec(compile("import math\nimport torch\n" + printed, "<solution>", "exec"), namespace)
    assert _checker(chapter, name)(namespace[name])
    capsys.readouterr()
    exercises.solution(name)
    assert printed == capsys.readouterr().out


# ----------------------------------------------------------------------------- the notebooks

def _functions_defined_in(source: str) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(source)
    return {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("chapter", list(CHAPTER_NOTEBOOK))
def test_notebooks_hold_stubs_and_call_every_checker_and_question(chapter):
    """No solution in the reading path: every exercise function is a stub whose message gives
    nothing away, its checker runs in the same cell, and every question is asked."""
    import jupytext

    notebook = jupytext.read(NOTEBOOKS / CHAPTER_NOTEBOOK[chapter])
    code_cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    source = "\n\n".join(code_cells)
    assert "Solution (try first!)" not in source
    defined = _functions_defined_in(source)
    for name in solutions.BY_CHAPTER[chapter]:
        assert name in defined, f"{CHAPTER_NOTEBOOK[chapter]} has no stub `{name}`"
        body = [node for node in defined[name].body
                if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        assert len(body) == 1 and isinstance(body[0], ast.Raise), f"{name} is not a stub"
        message = ast.unparse(body[0].exc)
        assert message == "NotImplementedError('your code here')", (
            f"{name}'s stub says {message}: a stub must not hint at the answer")
        cell = next(text for text in code_cells if f"def {name}(" in text)
        assert f"ex.check_{name}({name})" in cell, f"check_{name} must run in {name}'s cell"
    for name in _module(chapter).QUESTIONS:
        assert f'ex.answer("{name}", prediction)' in source, f"question {name} is never asked"


def test_not_done_message_names_no_formula():
    message = _core._not_done_message("check_delta_step", "delta_step", "nlbook.exercises.x")
    assert not set("=←Σ∑+−*/") & set(message.replace("ex = ", ""))


# ----------------------------------------------------------------------------- predict, then run

def _prediction_cells(chapter: str) -> list[str]:
    import jupytext

    notebook = jupytext.read(NOTEBOOKS / CHAPTER_NOTEBOOK[chapter])
    return [cell.source for cell in notebook.cells
            if cell.cell_type == "code" and "ex.answer(" in cell.source]


@pytest.mark.parametrize("chapter", list(CHAPTER_NOTEBOOK))
def test_every_prediction_cell_runs_its_experiment_out_of_sight(chapter):
    """Between ``prediction = ...`` and ``ex.answer(name, prediction)`` a predict-then-run cell
    runs nothing but ``with ex.experiment(name):`` (which holds the result back)."""
    for source in _prediction_cells(chapter):
        statements = ast.parse(source).body
        start = next(i for i, node in enumerate(statements) if isinstance(node, ast.Assign)
                     and ast.unparse(node.targets[0]) == "prediction")
        answer = next(i for i, node in enumerate(statements) if isinstance(node, ast.Expr)
                      and ast.unparse(node.value).startswith("ex.answer("))
        name = ast.literal_eval(statements[answer].value.args[0])
        between = statements[start + 1:answer]
        assert answer == len(statements) - 1, f"{name}: ex.answer must end its cell"
        for node in between:
            assert isinstance(node, ast.With) and ast.unparse(node.items[0].context_expr) == (
                f"ex.experiment({name!r})"), (
                f"{CHAPTER_NOTEBOOK[chapter]} question {name}: run the experiment inside "
                f"`with ex.experiment({name!r}):`, got {ast.unparse(node)[:80]!r}")


def test_an_experiment_is_hidden_until_a_prediction_then_shown_beside_it(capsys):
    ex = _module("associative_memory")
    question = ex.QUESTIONS["overwrite"]
    with ex.experiment("overwrite"):
        print("RESULT-31415")
    assert capsys.readouterr().out == ""
    ex.answer("overwrite")
    waiting = capsys.readouterr().out
    assert "RESULT-31415" not in waiting and "not done yet" in waiting
    assert "hidden until you predict" in waiting
    ex.answer("overwrite", question.correct)
    judged = capsys.readouterr().out
    assert judged.index("You predicted") < judged.index("RESULT-31415") < judged.index("right")
    ex.reveal("overwrite")
    assert "RESULT-31415" in capsys.readouterr().out
    with pytest.raises(ValueError, match="name"):
        with ex.experiment("no_such_question"):
            pass


def test_an_experiment_holds_its_figures_back():
    import matplotlib.pyplot as plt

    ex = _module("associative_memory")
    with ex.experiment("half_step") as held:
        plt.figure()
    assert len(held.figures) == 1 and not plt.get_fignums()


def test_a_prediction_cell_shows_no_result_in_a_real_kernel(tmp_path):
    """Through nbclient (what JupyterLab's "Run all" does): the cell's outputs hold no printout
    and no figure of the experiment until a prediction is set; then both are shown."""
    import nbclient
    import nbformat

    experiment = ('with ex.experiment("overwrite"):\n'
                  '    print("RESULT-27182")\n'
                  '    plt.figure(); plt.plot([0, 1])\n')
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\n"
                                  "from nlbook.exercises import associative_memory as ex"),
        nbformat.v4.new_code_cell(f"prediction = None\n{experiment}"
                                  'ex.answer("overwrite", prediction)'),
        nbformat.v4.new_code_cell(f"prediction = 'b'\n{experiment}"
                                  'ex.answer("overwrite", prediction)'),
    ])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()

    def shown(cell):
        text = "".join(output.get("text", "") for output in cell.outputs)
        images = [output for output in cell.outputs if "image/png" in output.get("data", {})]
        return text, images

    text, images = shown(notebook.cells[1])
    assert "RESULT-27182" not in text and not images and "not done yet" in text
    text, images = shown(notebook.cells[2])
    assert "RESULT-27182" in text and len(images) == 1 and "You predicted (b)" in text


# ----------------------------------------------------------------------------- how a failure reads

def test_a_wrong_answer_shows_the_hint_without_a_traceback():
    """In Jupyter a failed check renders as its hint alone: no frames of the checker (whose
    code would give the formula away)."""
    from nlbook.exercises import associative_memory as ex

    with pytest.raises(_core.CheckFailed) as caught:
        ex.check_delta_step(lambda S, k, v, beta, decay: S + beta * torch.outer(k, v))
    rendered = "\n".join(caught.value._render_traceback_())
    assert "Hebbian" in rendered and "Traceback" not in rendered and "File " not in rendered
    assert isinstance(caught.value, AssertionError)


def test_an_integer_answer_is_reported_as_written():
    from nlbook.exercises import nested_optimizers as ex

    with pytest.raises(AssertionError, match=r"got 6\b") as caught:
        ex.check_gradients_for_mass(lambda beta, fraction: 6)
    assert "6.0" not in str(caught.value)


def test_an_error_inside_the_learners_function_is_explained():
    from nlbook.exercises import self_modifying as ex

    with pytest.raises(_core.CheckFailed, match="your function raised ZeroDivisionError"):
        ex.check_effective_step(lambda lr, x: 1 / 0)
