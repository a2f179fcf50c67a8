"""nlbook.tasks: formal languages, recall across a gap, the continual-learning setup.

Every generator is deterministic under its seed or generator and rejects bad arguments with a
ValueError naming the argument; formal-language labels are checked against recognisers written
separately (regular expressions and a cancellation procedure); the recall answer is unreachable
without its planted fact.
"""

import re

import numpy as np
import pytest
import torch
from torch import nn

from nlbook.tasks.formal_languages import (
    ACCEPT_ID,
    ALPHABETS,
    END_ID,
    FORMAL_VOCABULARY,
    LANGUAGES,
    REJECT_ID,
    encode_strings,
    evaluate_formal_language,
    formal_language_batch,
    formal_language_task,
    is_member,
    prefix_labels,
    sample_negative,
    sample_positive,
    sample_strings,
    train_formal_language,
)
from nlbook.transformer import TransformerLM

# ---------------------------------------------------------------------------------------------
# Formal languages
# ---------------------------------------------------------------------------------------------


def _cancels_to_empty(string: str, pair: str) -> bool:
    """Dyck-1 by cancellation: delete adjacent ``pair`` until none is left."""
    projected = "".join(char for char in string if char in pair)
    while pair in projected:
        projected = projected.replace(pair, "")
    return projected == ""


def _equal_runs(pattern: str, string: str) -> bool:
    match = re.fullmatch(pattern, string)
    return match is not None and len({len(group) for group in match.groups()}) == 1


#: Recognisers written independently of nlbook.tasks.formal_languages (which uses automata and
#: counters): regular expressions, str.count and cancellation.
INDEPENDENT_RECOGNISERS = {
    "parity": lambda s: s.count("1") % 2 == 0,
    "aa_star": lambda s: re.fullmatch(r"(?:aa)*", s) is not None,
    "abab_star": lambda s: re.fullmatch(r"(?:abab)*", s) is not None,
    "anbn": lambda s: _equal_runs(r"(a+)(b+)", s),
    "anbncn": lambda s: _equal_runs(r"(a+)(b+)(c+)", s),
    "shuffle2": lambda s: _cancels_to_empty(s, "()") and _cancels_to_empty(s, "[]"),
}


def _one_edit_neighbours(string: str, alphabet: str):
    """Every string one substitution, insertion, deletion or transposition away."""
    for i in range(len(string)):
        yield string[:i] + string[i + 1:]
        for char in alphabet:
            yield string[:i] + char + string[i + 1:]
        for j in range(i + 1, len(string)):
            chars = list(string)
            chars[i], chars[j] = chars[j], chars[i]
            yield "".join(chars)
    for i in range(len(string) + 1):
        for char in alphabet:
            yield string[:i] + char + string[i:]


@pytest.mark.parametrize("language", LANGUAGES)
def test_labels_agree_with_an_independent_recogniser(language):
    recogniser = INDEPENDENT_RECOGNISERS[language]
    task = formal_language_task(language)
    generator = np.random.default_rng(7)
    for split in ("train", "bin1"):
        low, high = task.lengths(split)
        strings, labels = sample_strings(language, 300, (low, high), generator=generator)
        assert sum(labels) == 150  # balanced
        for string, label in zip(strings, labels, strict=True):
            assert low <= len(string) <= high
            assert set(string) <= set(ALPHABETS[language])
            assert label == recogniser(string) == is_member(language, string), string
        for string in strings[:60]:
            assert prefix_labels(language, string) == \
                [recogniser(string[:end]) for end in range(1, len(string) + 1)]
    # Exhaustively on every short string of the alphabet, positives and negatives alike.
    alphabet = ALPHABETS[language]
    for length in range(0, 9 if len(alphabet) <= 2 else 6):
        for digits in np.ndindex(*([len(alphabet)] * length)):
            string = "".join(alphabet[d] for d in digits)
            assert is_member(language, string) == recogniser(string), string


@pytest.mark.parametrize("language", LANGUAGES)
def test_negatives_are_near_misses(language):
    """Each negative is one edit away from a positive string, except (abab)*'s odd number of
    ``ab`` (a period near miss: (ab)^(2k+1) lies between (abab)^k and (abab)^(k+1))."""
    recogniser = INDEPENDENT_RECOGNISERS[language]
    generator = np.random.default_rng(3)
    for _ in range(40):
        negative = sample_negative(language, (2, 16), generator)
        assert not recogniser(negative)
        if language == "abab_star" and re.fullmatch(r"(?:ab)+", negative):
            assert (len(negative) // 2) % 2 == 1
            continue
        assert any(recogniser(neighbour) for neighbour in
                   _one_edit_neighbours(negative, ALPHABETS[language])), negative


@pytest.mark.parametrize("language", LANGUAGES)
def test_generators_are_deterministic_under_a_seed(language):
    task = formal_language_task(language)

    def draw(seed):
        return formal_language_batch(task, "bin1", 16, np.random.default_rng(seed),
                                     supervision="prefix")

    first, again, other = draw(5), draw(5), draw(6)
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.targets, again.targets)
    assert first.strings == again.strings and first.strings != other.strings


def test_encoding_layout_end_token_answer_and_padding():
    batch = encode_strings("anbn", ["ab", "aabb", "abb"], supervision="end")
    assert batch.inputs.shape == (3, 5)
    assert FORMAL_VOCABULARY.decode(batch.inputs[0]) == "ab=__"
    assert batch.end_positions.tolist() == [2, 4, 3]
    assert batch.labels.tolist() == [True, True, False]
    assert batch.targets[0].tolist() == [-1, -1, ACCEPT_ID, -1, -1]
    assert batch.targets[2].tolist() == [-1, -1, -1, REJECT_ID, -1]
    assert int((batch.inputs == END_ID).sum()) == 3
    dense = encode_strings("parity", ["0110"], supervision="prefix")
    assert dense.targets[0].tolist() == [ACCEPT_ID, REJECT_ID, ACCEPT_ID, ACCEPT_ID, ACCEPT_ID]
    assert prefix_labels("parity", "0110") == [True, False, True, True]


def test_positive_strings_have_the_requested_length():
    generator = np.random.default_rng(0)
    for language in LANGUAGES:
        for length in (12, 36):
            string = sample_positive(language, length, generator)
            assert len(string) == length and INDEPENDENT_RECOGNISERS[language](string)


def test_tasks_default_to_a_bin1_twice_as_long():
    task = formal_language_task("parity", train_lengths=(1, 20))
    assert (task.lengths("train"), task.lengths("bin0"), task.lengths("bin1")) == \
        ((1, 20), (1, 20), (21, 40))
    assert task.lengths("Bin1") == (21, 40) and task.sequence_length == 41
    assert formal_language_task("(aa)*").language == "aa_star"
    assert formal_language_task("Shuffle-2").language == "shuffle2"
    assert formal_language_task("aⁿbⁿcⁿ").language == "anbncn"


@pytest.mark.parametrize(("call", "pattern"), [
    (lambda: formal_language_task("dyck3"), "language must be one of"),
    (lambda: formal_language_task("parity", train_lengths=(0, 5)), "train_lengths"),
    (lambda: formal_language_task("parity", train_lengths=(9, 5)), "train_lengths"),
    (lambda: formal_language_task("parity", train_lengths=(2, 9.5)), "train_lengths"),
    (lambda: formal_language_task("abab_star", train_lengths=(1, 3)), "train_lengths"),
    (lambda: formal_language_task("aa_star", train_lengths=(2, 2)), "train_lengths"),
    (lambda: formal_language_task("parity", train_lengths=(2, 8), test_lengths=(8, 16)),
     "test_lengths"),
    (lambda: formal_language_task("anbncn", train_lengths=(2, 8), test_lengths=(10, 11)),
     "test_lengths"),
    (lambda: sample_strings("parity", 0, (1, 4), generator=np.random.default_rng(0)), "count"),
    (lambda: sample_strings("parity", 4, (1, 4), generator=0), "generator"),
    (lambda: sample_positive("anbncn", 4, np.random.default_rng(0)), "length"),
    (lambda: is_member("anbn", "abc"), "string must use the anbn alphabet"),
    (lambda: encode_strings("parity", ["01", ""]), "strings must be non-empty"),
    (lambda: encode_strings("parity", ["01"], supervision="dense"), "supervision"),
    (lambda: encode_strings("parity", ["01"], length=2), "length"),
    (lambda: formal_language_task("parity").lengths("bin2"), "split"),
])
def test_formal_language_arguments_are_validated(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


class ParityOracle(nn.Module):
    """A hand-made "model" that computes parity exactly: the harness must score it 100 %."""

    vocab_size = len(FORMAL_VOCABULARY)

    def forward(self, idx, targets=None):
        ones = (idx == FORMAL_VOCABULARY.encode("1")[0]).long().cumsum(dim=1)
        logits = torch.zeros(*idx.shape, self.vocab_size)
        logits[..., ACCEPT_ID] = (ones % 2 == 0).float()
        logits[..., REJECT_ID] = (ones % 2 == 1).float()
        return logits, None


def test_harness_scores_an_exact_recogniser_at_100_and_a_constant_at_chance():
    task = formal_language_task("parity")
    assert evaluate_formal_language(ParityOracle(), task, "bin0") == 1.0
    assert evaluate_formal_language(ParityOracle(), task, "bin1") == 1.0
    assert evaluate_formal_language(ParityOracle(), "parity", "Bin1", examples=64) == 1.0

    class AlwaysAccept(ParityOracle):
        def forward(self, idx, targets=None):
            logits = torch.zeros(*idx.shape, self.vocab_size)
            logits[..., ACCEPT_ID] = 1.0
            return logits, None

    assert evaluate_formal_language(AlwaysAccept(), task, "bin1", examples=200) == 0.5


def test_harness_trains_a_course_model_deterministically():
    task = formal_language_task("anbn", train_lengths=(2, 8))

    def run():
        torch.manual_seed(0)
        model = TransformerLM(len(FORMAL_VOCABULARY), 16, 1, 2, context_length=17)
        result = train_formal_language(model, task, steps=4, batch_size=8, seed=3)
        return result, evaluate_formal_language(model, task, "bin1", examples=64)

    (first, accuracy), (again, accuracy_again) = run(), run()
    assert first.steps == 4 and len(first.losses) == 4 and first.seconds > 0
    assert first.losses == again.losses and accuracy == accuracy_again
    assert 0.0 <= accuracy <= 1.0
    short = TransformerLM(len(FORMAL_VOCABULARY), 16, 1, 2, context_length=16)
    with pytest.raises(ValueError, match="context_length >= 17"):
        train_formal_language(short, task, steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_formal_language(TransformerLM(13, 16, 1, 2, context_length=17), task, steps=0)
    with pytest.raises(ValueError, match="vocab_size"):
        evaluate_formal_language(TransformerLM(5, 16, 1, 2, context_length=17), task, "bin0")


# ---------------------------------------------------------------------------------------------
# Recall across a gap
# ---------------------------------------------------------------------------------------------

from nlbook.data import CharVocabulary, load_corpus  # noqa: E402
from nlbook.tasks.recall import (  # noqa: E402
    ANSWER_ALPHABET,
    fact_line,
    induction_guesses,
    masked_accuracy,
    mqar_batch,
    query_text,
    random_answer,
    recall_accuracy,
    recall_prompt,
    recall_training_batch,
    recall_training_text,
)

VOCABULARY = load_corpus().vocabulary  # Tiny Shakespeare's 65 characters
FILLER = load_corpus().text[:200_000]


class CopyOracle(nn.Module):
    """An induction-head oracle: predicts the character that followed the latest earlier
    occurrence of the last ``match`` characters, else ``e``. It recalls every fact it can see
    and knows nothing else, so it separates "the fact is reachable" from "it is not"."""

    def __init__(self, vocabulary, match=12, context_length=None, streaming=False):
        super().__init__()
        self.vocab_size = len(vocabulary)
        self.fallback = vocabulary.chars.index("e")
        self.match = match
        if context_length is not None:
            self.context_length = context_length
        if streaming:
            self.stream = self._stream

    def forward(self, idx, targets=None):
        guesses = induction_guesses(idx, vocab_size=self.vocab_size, fallback=self.fallback,
                                    match=self.match)
        return nn.functional.one_hot(guesses, self.vocab_size).float(), None

    def _stream(self, idx, state=None):
        history = idx if state is None else torch.cat([state, idx], dim=1)
        logits, _ = self.forward(history)
        return logits[:, -idx.shape[1]:], history


def test_recall_is_perfect_with_the_fact_in_reach_and_chance_without():
    gaps = (0, 40, 300)
    streamer = CopyOracle(VOCABULARY, streaming=True)
    seen = recall_accuracy(streamer, VOCABULARY, gaps=gaps, trials=24, filler_text=FILLER,
                           chunk_length=100)
    assert seen.mode == "stream" and seen.accuracy == {0: 1.0, 40: 1.0, 300: 1.0}
    assert seen.exact_match == {0: 1.0, 40: 1.0, 300: 1.0}
    # A fixed 64-character window sees the fact at gap 0 and not at 40 or 300.
    windowed = recall_accuracy(CopyOracle(VOCABULARY, context_length=64), VOCABULARY,
                               gaps=gaps, trials=24, filler_text=FILLER)
    assert windowed.mode == "window" and windowed.window == 64
    assert windowed.fact_in_window == {0: True, 40: False, 300: False}
    assert windowed.accuracy[0] == 1.0
    assert windowed.accuracy[40] < 0.15 and windowed.accuracy[300] < 0.15
    # Controls: the fact removed, or replaced by another answer: chance (1/26) even for the
    # oracle that recalls anything it can see.
    for control in ("removed", "replaced"):
        blind = recall_accuracy(streamer, VOCABULARY, gaps=(40, 300), trials=60,
                                filler_text=FILLER, control=control, chunk_length=200)
        for gap in (40, 300):
            assert abs(blind.accuracy[gap] - 1 / 26) < 0.05, (control, blind.accuracy)
            assert blind.exact_match[gap] == 0.0
    assert blind.chance == pytest.approx(1 / 26)


def test_the_answer_is_nowhere_in_a_control_prompt():
    for control in ("removed", "replaced"):
        generator = np.random.default_rng(11)
        for _ in range(50):
            prompt = recall_prompt(200, generator=generator, filler_text=FILLER, facts=3,
                                   control=control)
            assert prompt.text.endswith(query_text(prompt.name))
            assert query_text(prompt.name) + prompt.answer not in prompt.text
            if control == "removed":
                assert prompt.text.count(prompt.name) == 1 and prompt.fact_start is None
    # With the fact: the answer is planted exactly where fact_start says, gap characters back.
    prompt = recall_prompt(100, generator=np.random.default_rng(0), filler_text=FILLER)
    line = fact_line(prompt.name, prompt.answer)
    assert prompt.text[prompt.fact_start:prompt.fact_start + len(line)] == line
    gap_end = len(prompt.text) - len(query_text(prompt.name))
    assert gap_end - (prompt.fact_start + len(line)) == 100


def test_answers_are_uniform_over_26_letters():
    """Chance is 1/26 per character because answers are uniform and independent."""
    letters = random_answer(26_000, np.random.default_rng(0))
    counts = np.array([letters.count(char) for char in ANSWER_ALPHABET])
    assert counts.min() > 850 and counts.max() < 1150
    assert set(ANSWER_ALPHABET + "the key of is.\n") <= set(VOCABULARY.chars)


def test_recall_scoring_runs_on_course_models_and_streaming_is_exact():
    from nlbook.hope import HopeLM

    hope = HopeLM(len(VOCABULARY), 16, 1, 2, seed=0)
    streamed = recall_accuracy(hope, VOCABULARY, gaps=(8, 90), trials=3, filler_text=FILLER,
                               chunk_length=37)
    whole = recall_accuracy(hope, VOCABULARY, gaps=(8, 90), trials=3, filler_text=FILLER,
                            mode="window", window=10_000)
    for gap in (8, 90):
        assert streamed.log_likelihood[gap] == pytest.approx(whole.log_likelihood[gap], abs=1e-4)
    torch.manual_seed(0)
    transformer = TransformerLM(len(VOCABULARY), 16, 1, 2, context_length=64)
    result = recall_accuracy(transformer, VOCABULARY, gaps=(8, 90), trials=3,
                             filler_text=FILLER)
    assert result.mode == "window" and result.fact_in_window == {8: True, 90: False}
    again = recall_accuracy(transformer, VOCABULARY, gaps=(8, 90), trials=3, filler_text=FILLER)
    assert result == again


def test_recall_training_batch_plants_a_learnable_fact_and_query():
    generator = torch.Generator().manual_seed(0)
    inputs, targets = recall_training_batch(VOCABULARY, 8, 96, generator, gaps=(0, 30),
                                            filler_text=FILLER, answer_only=True)
    assert inputs.shape == targets.shape == (8, 96)
    for row in range(8):
        text = VOCABULARY.decode(inputs[row])
        answer = VOCABULARY.decode(targets[row][targets[row] >= 0])
        assert len(answer) == 4
        match = re.search(r"the key of ([A-Z][a-z]{4}) is ([a-z]{4})\.\n", text)
        assert match and match[2] == answer
        assert text.count(query_text(match[1])) == 2
    again = recall_training_batch(VOCABULARY, 8, 96, torch.Generator().manual_seed(0),
                                  gaps=(0, 30), filler_text=FILLER, answer_only=True)
    assert torch.equal(inputs, again[0]) and torch.equal(targets, again[1])
    dense = recall_training_batch(VOCABULARY, 2, 96, torch.Generator().manual_seed(0),
                                  filler_text=FILLER)
    assert torch.equal(dense[1][:, :-1], dense[0][:, 1:])  # every next character is a target


def test_recall_training_text_keeps_the_text_and_plants_fact_query_pairs():
    text = FILLER[:50_000]
    planted = recall_training_text(text, gaps=(100, 300), spacing=200, seed=1)
    facts = re.findall(r"the key of ([A-Z][a-z]{4}) is ([a-z]{4})\.\n", planted)
    assert len(facts) >= 40 and len(facts) % 2 == 0
    assert all(facts[i] == facts[i + 1] for i in range(0, len(facts), 2))  # query repeats fact
    assert re.sub(r"the key of [A-Z][a-z]{4} is [a-z]{4}\.\n", "", planted) == text
    assert planted == recall_training_text(text, gaps=(100, 300), spacing=200, seed=1)


def test_mqar_batch_zoology_options():
    """power_a: queries on even offsets of the query region, short gaps far more common than
    long ones (Zoology's a = 0.01); random_non_queries: every blank is filled, nothing else
    changes (pairs, query positions, targets)."""
    plain = mqar_batch(256, vocab_size=64, sequence_length=64, kv_pairs=4,
                       generator=torch.Generator().manual_seed(3), power_a=0.01)
    filled = mqar_batch(256, vocab_size=64, sequence_length=64, kv_pairs=4,
                        generator=torch.Generator().manual_seed(3), power_a=0.01,
                        random_non_queries=True)
    inputs, targets = plain
    offsets = (targets >= 0).nonzero()[:, 1] - 8
    assert bool((offsets % 2 == 0).all()) and bool((offsets >= 0).all())
    slots = offsets // 2                                   # 0 … 27
    assert int((slots < 4).sum()) > 3 * int((slots >= 24).sum())
    for row in range(256):
        assert int((targets[row] >= 0).sum()) == 4
        pairs = dict(zip(inputs[row, 0:8:2].tolist(), inputs[row, 1:8:2].tolist(), strict=True))
        for position in (targets[row] >= 0).nonzero().flatten().tolist():
            assert pairs[int(inputs[row, position])] == int(targets[row, position])
    assert torch.equal(filled[1], targets)
    scored_or_pairs = (targets >= 0) | (torch.arange(64) < 8)
    assert torch.equal(filled[0][scored_or_pairs], inputs[scored_or_pairs])
    assert float((filled[0][~scored_or_pairs] != 0).float().mean()) > 0.9
    with pytest.raises(ValueError, match="power_a"):
        mqar_batch(2, vocab_size=64, sequence_length=64, kv_pairs=4,
                   generator=torch.Generator(), power_a=1.5)
    with pytest.raises(ValueError, match="sequence_length"):
        mqar_batch(2, vocab_size=64, sequence_length=14, kv_pairs=4,
                   generator=torch.Generator(), power_a=0.01)


def test_mqar_batch_queries_every_key_once():
    generator = torch.Generator().manual_seed(0)
    inputs, targets = mqar_batch(4, vocab_size=64, sequence_length=48, kv_pairs=8,
                                 generator=generator)
    for row in range(4):
        keys, values = inputs[row, 0:16:2], inputs[row, 1:16:2]
        assert bool((keys >= 1).all() and (keys < 32).all() and (values >= 32).all())
        assert len(set(keys.tolist())) == 8
        queries = (targets[row] >= 0).nonzero().flatten()
        assert len(queries) == 8 and bool((queries >= 16).all())
        pairs = dict(zip(keys.tolist(), values.tolist(), strict=True))
        for position in queries.tolist():
            assert pairs[int(inputs[row, position])] == int(targets[row, position])
    again = mqar_batch(4, vocab_size=64, sequence_length=48, kv_pairs=8,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(inputs, again[0])

    class Lookup(nn.Module):  # recalls perfectly: the metric must say 1.0
        def forward(self, idx, targets=None):
            logits = torch.zeros(*idx.shape, 64)
            for row in range(idx.shape[0]):
                pairs = dict(zip(idx[row, 0:16:2].tolist(), idx[row, 1:16:2].tolist(),
                                 strict=True))
                for position in range(16, idx.shape[1]):
                    logits[row, position, pairs.get(int(idx[row, position]), 0)] = 1.0
            return logits, None

    assert masked_accuracy(Lookup(), inputs, targets) == 1.0


@pytest.mark.parametrize(("call", "pattern"), [
    (lambda: recall_accuracy(CopyOracle(VOCABULARY, context_length=64), VOCABULARY,
                             gaps=(-1,)), "gaps"),
    (lambda: recall_accuracy(CopyOracle(VOCABULARY, context_length=64), VOCABULARY,
                             gaps=()), "gaps"),
    (lambda: recall_accuracy(CopyOracle(VOCABULARY, context_length=64), VOCABULARY,
                             gaps=(8,), trials=0), "trials"),
    (lambda: recall_accuracy(CopyOracle(VOCABULARY, context_length=64), VOCABULARY,
                             gaps=(8,), mode="stream"), "stream"),
    (lambda: recall_accuracy(CopyOracle(VOCABULARY), VOCABULARY, gaps=(8,)), "window"),
    (lambda: recall_accuracy(TransformerLM(10, 8, 1, 1, context_length=64), VOCABULARY,
                             gaps=(8,)), "vocab_size"),
    (lambda: recall_accuracy(CopyOracle(VOCABULARY, context_length=64), CharVocabulary("abc"),
                             gaps=(8,)), "vocabulary must contain"),
    (lambda: recall_prompt(8, generator=np.random.default_rng(0), control="erased"),
     "control"),
    (lambda: recall_prompt(8, generator=0), "generator"),
    (lambda: recall_prompt(8, generator=np.random.default_rng(0), facts=0), "facts"),
    (lambda: recall_training_batch(VOCABULARY, 2, 40, torch.Generator(), gaps=(20, 30)),
     "context_length"),
    (lambda: recall_training_batch(VOCABULARY, 2, 96, torch.Generator(), gaps=(30, 20)),
     "gaps"),
    (lambda: recall_training_batch(VOCABULARY, 2, 96, np.random.default_rng(0)), "generator"),
    (lambda: recall_training_text("abc\n", gaps=(5,)), "gaps"),
    (lambda: recall_training_text("abc\n", spacing=-1), "spacing"),
    (lambda: mqar_batch(2, vocab_size=16, sequence_length=48, kv_pairs=8,
                        generator=torch.Generator()), "kv_pairs"),
    (lambda: mqar_batch(2, vocab_size=64, sequence_length=20, kv_pairs=8,
                        generator=torch.Generator()), "sequence_length"),
])
def test_recall_arguments_are_validated(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# ---------------------------------------------------------------------------------------------
# Continual learning: A -> B -> A
# ---------------------------------------------------------------------------------------------

from nlbook.data import make_corpus  # noqa: E402
from nlbook.tasks.continual import (  # noqa: E402
    continual_batches,
    continual_losses,
    continual_schedule,
    continual_setup,
)


@pytest.fixture(scope="module")
def setup_aba():
    return continual_setup(steps_per_phase=3)


def test_continual_schedule_is_a_then_b_then_a(setup_aba):
    assert [(p.corpus, p.first_step, p.steps) for p in setup_aba.phases] == \
        [("A", 0, 3), ("B", 3, 3), ("A", 6, 3)]
    assert setup_aba.total_steps == 9 and len(setup_aba.vocabulary) == 96
    assert [phase.corpus for _, phase in continual_schedule(setup_aba)] == list("AAABBBAAA")
    assert [step for step, _ in continual_schedule(setup_aba)] == list(range(9))
    assert setup_aba.phase_at(4).corpus == "B" and setup_aba.phase_at(8).index == 2
    assert setup_aba.corpora["A"].source == "tiny_shakespeare"
    assert setup_aba.corpora["B"].source == "python_stdlib"
    uneven = continual_setup(steps_per_phase=(2, 5), order=("B", "A"),
                             corpora=(setup_aba.corpora["A"], setup_aba.corpora["B"]))
    assert [(p.corpus, p.first_step) for p in uneven.phases] == [("B", 0), ("A", 2)]


def test_continual_batches_follow_the_phase_and_are_deterministic(setup_aba):
    def run(seed):
        return list(continual_batches(setup_aba, batch_size=2, context_length=32,
                                      generator=torch.Generator().manual_seed(seed)))

    first, again, other = run(0), run(0), run(1)
    assert [s.step for s in first] == list(range(9))
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0].inputs, other[0].inputs)
    for item in first:
        text = setup_aba.vocabulary.decode(item.inputs[0])
        assert text in setup_aba.corpora[item.phase.corpus].text
        assert torch.equal(item.inputs[:, 1:], item.targets[:, :-1])


def test_continual_validation_sets_are_fixed_and_losses_finite(setup_aba):
    sets = setup_aba.validation_sets(context_length=32, windows=4)
    again = setup_aba.validation_sets(context_length=32, windows=4)
    assert set(sets) == {"A", "B"}
    for name in ("A", "B"):
        assert sets[name][0].shape == (4, 32) and torch.equal(sets[name][0], again[name][0])
        val_text = setup_aba.corpora[name].text[int(0.9 * len(setup_aba.corpora[name].text)):]
        assert setup_aba.vocabulary.decode(sets[name][0][0]) in val_text
    torch.manual_seed(0)
    model = TransformerLM(len(setup_aba.vocabulary), 16, 1, 2, context_length=32)
    losses = continual_losses(model, sets)
    assert set(losses) == {"A", "B"}
    assert all(abs(loss - np.log(96)) < 0.5 for loss in losses.values())


def test_continual_arguments_are_validated(setup_aba):
    pair = (setup_aba.corpora["A"], setup_aba.corpora["B"])
    with pytest.raises(ValueError, match="order"):
        continual_setup(steps_per_phase=2, order=("A", "C"), corpora=pair)
    with pytest.raises(ValueError, match="order"):
        continual_setup(steps_per_phase=2, order=(), corpora=pair)
    with pytest.raises(ValueError, match="steps_per_phase"):
        continual_setup(steps_per_phase=0, corpora=pair)
    with pytest.raises(ValueError, match="steps_per_phase"):
        continual_setup(steps_per_phase=(1, 2), corpora=pair)
    with pytest.raises(ValueError, match="corpora must share one vocabulary"):
        continual_setup(steps_per_phase=2, corpora=(pair[0], make_corpus("print(1)\n" * 20)))
    with pytest.raises(ValueError, match="step"):
        setup_aba.phase_at(9)
    with pytest.raises(ValueError, match="generator"):
        next(continual_batches(setup_aba, batch_size=2, context_length=8, generator=0))
