"""Table 5's next-character-set prediction (nlbook.tasks.next_character) and the recurrent
baselines of chapter 7 (nlbook.claims.baselines)."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nlbook.claims.baselines import LSTMLM, DeltaRuleLM
from nlbook.tasks.formal_languages import ALPHABETS, FORMAL_VOCABULARY, LANGUAGES, is_member
from nlbook.tasks.next_character import (
    TABLE5_TEST_LENGTHS,
    TABLE5_TRAIN_LENGTHS,
    encode_prediction_batch,
    next_character_sets,
    output_ids,
    output_symbols,
    prediction_loss,
    prediction_strings,
    strings_correct,
    train_next_character,
)

# longest member enumerated, and longest prefix checked, per language (alphabet size)
_BRUTE = {"parity": (10, 5), "aa_star": (10, 5), "abab_star": (12, 6), "anbn": (12, 5),
          "anbncn": (9, 2), "shuffle2": (8, 3)}


def _member_prefixes(language):
    longest, _ = _BRUTE[language]
    prefixes = set()
    for length in range(1, longest + 1):
        for letters in itertools.product(ALPHABETS[language], repeat=length):
            string = "".join(letters)
            if is_member(language, string):
                prefixes.update(string[:end] for end in range(1, length + 1))
    return prefixes


@pytest.mark.parametrize("language", LANGUAGES)
def test_targets_agree_with_brute_force_enumeration(language):
    """Character c is allowed after prefix p exactly when some member of the language starts
    with p + c (members enumerated with is_member); "may end" exactly when p is a member."""
    prefixes = _member_prefixes(language)
    _, longest_prefix = _BRUTE[language]
    alphabet = ALPHABETS[language]
    checked = 0
    for prefix in sorted(p for p in prefixes if len(p) <= longest_prefix):
        rows = next_character_sets(language, prefix)
        assert rows.shape == (len(prefix), len(alphabet) + 1)
        for t in range(len(prefix)):
            head = prefix[:t + 1]
            expected = [head + char in prefixes for char in alphabet]
            expected.append(is_member(language, head))
            assert rows[t].tolist() == expected, (head, rows[t])
            checked += 1
    assert checked >= 3


def test_output_symbols_and_ids():
    assert output_symbols("anbncn") == "abc="
    ids = output_ids("shuffle2")
    assert FORMAL_VOCABULARY.decode(ids.tolist()) == "()[]="


def test_data_follow_bhattamishra_lengths_and_test_bins_are_distinct():
    assert TABLE5_TRAIN_LENGTHS == (2, 50) and TABLE5_TEST_LENGTHS == (51, 100)
    for language in LANGUAGES:
        strings = prediction_strings(language, 200, (51, 100), 0)
        assert all(51 <= len(s) <= 100 and is_member(language, s) for s in strings)
    assert len(prediction_strings("anbn", 2000, (51, 100), 1, distinct=True)) == 25
    assert len(prediction_strings("parity", 300, (51, 100), 1, distinct=True)) == 300
    assert prediction_strings("parity", 5, (2, 9), 3) == prediction_strings("parity", 5, (2, 9), 3)
    with pytest.raises(ValueError, match="lengths"):
        prediction_strings("abab_star", 5, (5, 7), 0)
    with pytest.raises(ValueError, match="prefix"):
        next_character_sets("anbn", "aba")


def test_batch_padding_mask_and_loss():
    batch = encode_prediction_batch("parity", ["0110", "11"])
    assert batch.inputs.shape == (2, 4) and batch.targets.shape == (2, 4, 3)
    assert batch.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.targets[1, 2:].sum() == 0
    outputs = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
    per_entry = F.binary_cross_entropy_with_logits(outputs, batch.targets, reduction="none")
    expected = per_entry[batch.mask].mean()
    torch.testing.assert_close(prediction_loss(outputs, batch), expected)


class Oracle(nn.Module):
    """Reads its input back and answers the exact sets (wrong at one string if ``spoil``)."""

    def __init__(self, language, spoil=None):
        super().__init__()
        self.language, self.spoil = language, spoil
        self.context_length = 1000

    def forward(self, idx):
        logits = torch.full((*idx.shape, len(FORMAL_VOCABULARY)), -10.0)
        ids = output_ids(self.language)
        for row in range(idx.shape[0]):
            string = FORMAL_VOCABULARY.decode([i for i in idx[row].tolist() if i != 0])
            sets = torch.as_tensor(next_character_sets(self.language, string), dtype=torch.float)
            if string == self.spoil:
                sets[-1, -1] = 1 - sets[-1, -1]
            logits[row, :len(string)][:, ids] = 20 * sets - 10
        return logits, None


def test_a_string_counts_only_if_every_position_is_right():
    strings = prediction_strings("shuffle2", 20, (2, 12), 0, distinct=True)
    assert strings_correct(Oracle("shuffle2"), "shuffle2", strings, batch_size=7) == \
        len(strings)
    assert strings_correct(Oracle("shuffle2", spoil=strings[3]), "shuffle2", strings) == \
        len(strings) - 1


def test_the_lstm_control_learns_aa_star_and_counts_past_its_training_lengths():
    torch.manual_seed(0)
    model = LSTMLM(len(FORMAL_VOCABULARY), 16, 1)
    strings = prediction_strings("aa_star", 500, (2, 50), 0)
    losses = train_next_character(model, "aa_star", strings, steps=200, batch_size=16,
                                  learning_rate=1e-2, seed=0)
    assert losses[-1] < losses[0] / 10
    longer = prediction_strings("aa_star", 100, (51, 100), 1, distinct=True)
    assert strings_correct(model, "aa_star", longer) >= 0.95 * len(longer)


@pytest.mark.parametrize("make", [
    lambda: LSTMLM(11, 8, 2, context_length=12),
    lambda: DeltaRuleLM(11, 8, 2, 2, context_length=12, beta_max=2.0, chunk_size=4),
])
def test_baselines_are_causal_and_batch_independent(make):
    torch.manual_seed(0)
    model = make().double()
    idx = torch.randint(11, (3, 12), generator=torch.Generator().manual_seed(1))
    logits, _ = model(idx)
    for t in range(11):
        changed = idx.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % 11
        torch.testing.assert_close(model(changed)[0][:, :t + 1], logits[:, :t + 1],
                                   rtol=0, atol=1e-10)
    for row in range(3):
        torch.testing.assert_close(model(idx[row:row + 1])[0][0], logits[row],
                                   rtol=0, atol=1e-10)


def test_delta_rule_lm_beta_range_and_chunking_is_exact():
    """β = beta_max · sigmoid(.) lies in (0, beta_max); the chunkwise form equals the float64
    token loop of nlbook.memory.delta_rule (chunk_size None)."""
    torch.manual_seed(0)
    wide = DeltaRuleLM(11, 8, 1, 2, beta_max=2.0, chunk_size=4).double()
    layer = wide.layers[0]
    with torch.no_grad():
        x = wide.token_embedding(torch.randint(11, (2, 9)))
        beta = wide.beta_max * torch.sigmoid(layer.beta(layer.norm(x)))
    assert float(beta.max()) < 2.0 and float(beta.min()) > 0.0
    idx = torch.randint(11, (2, 9), generator=torch.Generator().manual_seed(2))
    chunked, _ = wide(idx)
    layer.chunk_size = None
    looped, _ = wide(idx)
    torch.testing.assert_close(chunked, looped, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="beta_max"):
        DeltaRuleLM(11, 8, 1, 2, beta_max=2.5)
