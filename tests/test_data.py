"""nlbook.data: the sha256 check, nanoGPT's vocabulary and split, any UTF-8 corpus, batches."""

import pytest
import torch

from nlbook.data import (
    CharVocabulary,
    DataFileError,
    joint_vocabulary,
    load_corpus,
    load_corpus_pair,
    load_python_stdlib,
    load_text_file,
    load_tiny_shakespeare,
    make_corpus,
    random_batch,
    sequential_windows,
    tiny_shakespeare_path,
)


def test_tiny_shakespeare_vocabulary_and_nanogpt_split():
    corpus = load_corpus()
    assert corpus.vocab_size == 65
    assert corpus.vocabulary.chars[:3] == "\n !" and corpus.vocabulary.chars[-1] == "z"
    assert (len(corpus.train_ids), len(corpus.val_ids)) == (1_003_854, 111_540)
    assert corpus.vocabulary.decode(corpus.train_ids[:14]) == "First Citizen:"
    # The split is at int(0.9 * len): the validation text is the last 10%.
    assert corpus.vocabulary.decode(corpus.val_ids) == corpus.text[int(0.9 * len(corpus.text)):]


def test_tampered_or_missing_file_gives_a_clear_error(tmp_path):
    original = tiny_shakespeare_path().read_bytes()
    tampered = bytearray(original)
    tampered[1000] = ord("#")
    (tmp_path / "tinyshakespeare.txt").write_bytes(bytes(tampered))
    with pytest.raises(DataFileError, match=r"tinyshakespeare\.txt has sha256 .* altered"):
        load_tiny_shakespeare(tmp_path)
    with pytest.raises(DataFileError, match="not found"):
        load_tiny_shakespeare(tmp_path / "elsewhere")


def test_any_utf8_file_is_a_corpus(tmp_path):
    path = tmp_path / "poem.txt"
    text = "Ünïcödé façade — naïve café.\n" * 20
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus(path)
    assert corpus.vocabulary == CharVocabulary.from_text(text)
    assert corpus.vocabulary.decode(torch.cat([corpus.train_ids, corpus.val_ids])) == text
    assert len(corpus.train_ids) == int(0.9 * len(text))
    assert corpus.source == str(path)


def test_bad_corpus_files(tmp_path):
    with pytest.raises(DataFileError, match="does not exist"):
        load_text_file(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataFileError, match=r"latin1\.txt is not valid UTF-8"):
        load_text_file(tmp_path / "latin1.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataFileError, match="empty"):
        load_text_file(tmp_path / "empty.txt")


def test_vocabulary_round_trip_and_errors():
    vocabulary = CharVocabulary.from_text("hello world")
    assert vocabulary.chars == " dehlorw"
    assert vocabulary.decode(vocabulary.encode("hold")) == "hold"
    with pytest.raises(ValueError, match=r"prompt contains the character 'z'"):
        vocabulary.encode("zoo", name="prompt")
    with pytest.raises(ValueError, match="ids must lie in"):
        vocabulary.decode([0, 8])
    with pytest.raises(ValueError, match="once"):
        CharVocabulary("aa")


def test_random_batch_is_shifted_and_reproducible():
    corpus = make_corpus("abcdefghij" * 30)
    batch = random_batch(corpus.train_ids, 5, 8, torch.Generator().manual_seed(0))
    again = random_batch(corpus.train_ids, 5, 8, torch.Generator().manual_seed(0))
    inputs, targets = batch
    assert inputs.shape == targets.shape == (5, 8) and inputs.dtype == torch.int64
    assert torch.equal(inputs, again[0]) and torch.equal(targets, again[1])
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert torch.equal(targets, (inputs + 1) % 10)  # the text cycles through the alphabet
    with pytest.raises(ValueError, match="context_length"):
        random_batch(corpus.train_ids, 2, 0, torch.Generator())
    with pytest.raises(ValueError, match="fewer than context_length"):
        random_batch(corpus.train_ids[:5], 2, 8, torch.Generator())


def test_sequential_windows_cover_every_target_once():
    ids = torch.arange(23)
    inputs, targets = sequential_windows(ids, 5)
    assert inputs.shape == targets.shape == (5, 5)
    kept = targets[targets >= 0]
    assert torch.equal(kept, ids[1:])
    assert torch.equal(inputs.flatten()[:22], ids[:-1])


# ----------------------------------------------------------------------------- carried streams

def test_contiguous_streams_continue_restart_staggered_and_aligned():
    from nlbook.data import ContiguousStreams

    ids = torch.arange(5000)
    streams = ContiguousStreams(ids, 8, 16, stream_length=128, generator=torch.Generator()
                                .manual_seed(0), alignment=32)
    previous, restarts = None, []
    for call in range(40):
        inputs, targets, restarted = streams.next_batch()
        assert inputs.shape == targets.shape == (8, 16) and restarted.shape == (8,)
        assert torch.equal(targets, inputs + 1)                      # next tokens
        if call == 0:
            assert bool(restarted.all())
        else:
            continued = ~restarted
            assert torch.equal(inputs[continued, 0], previous[continued, -1] + 1)
            if bool(restarted.any()):
                assert (call * 16) % 32 == 0                          # only on the grid
            restarts.append(int(restarted.sum()))
        previous = inputs
    # Staggered: restarts are spread over the steps, never all rows at once after the start.
    assert max(restarts) < 8 and sum(restarts) > 0
    # Every row restarts every 128 tokens (8 windows) once its first stream has ended.
    assert sum(restarts) == pytest.approx(8 * 39 / 8, abs=8)


def test_contiguous_streams_state_round_trip_and_validation():
    from nlbook.data import ContiguousStreams

    ids = torch.arange(3000)
    first = ContiguousStreams(ids, 4, 8, stream_length=32, generator=torch.Generator()
                              .manual_seed(1))
    for _ in range(5):
        first.next_batch()
    saved, generator_state = first.state_dict(), first.generator.get_state()
    expected = [first.next_batch() for _ in range(6)]
    second = ContiguousStreams(ids, 4, 8, stream_length=32, generator=torch.Generator())
    second.generator.set_state(generator_state)
    second.load_state_dict(saved)
    for a, b in zip(expected, [second.next_batch() for _ in range(6)], strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="stream_length"):
        ContiguousStreams(ids, 4, 8, stream_length=20, generator=torch.Generator())
    with pytest.raises(ValueError, match="stream_length"):
        ContiguousStreams(ids, 4, 8, stream_length=24, generator=torch.Generator(), alignment=16)
    with pytest.raises(ValueError, match="batch_size"):
        ContiguousStreams(ids, 0, 8, stream_length=32, generator=torch.Generator())
    with pytest.raises(ValueError, match="ids"):
        ContiguousStreams(ids[:20], 4, 8, stream_length=32, generator=torch.Generator())
    never = ContiguousStreams(ids[:100], 2, 8, stream_length=None, generator=torch.Generator())
    restarted_any = [bool(never.next_batch()[2].any()) for _ in range(30)]
    assert restarted_any[0] and any(restarted_any[1:])  # only at the end of the text


# The second corpus (chapter 7): the CPython standard-library snapshot and the joint vocabulary


def test_python_stdlib_snapshot_matches_its_recorded_sha256():
    from nlbook.data import PYTHON_STDLIB_SHA256, python_stdlib_path, sha256_of_file

    assert sha256_of_file(python_stdlib_path()) == PYTHON_STDLIB_SHA256
    text = load_python_stdlib()
    assert len(text) == 821_855 and text.isascii()
    assert text.count("# ==== Lib/") == 40 and "Python Software Foundation" in text[:200]
    assert (python_stdlib_path().parent / "LICENSE-python.txt").is_file()


def test_tampered_or_missing_python_corpus_gives_a_clear_error(tmp_path):
    from nlbook.data import python_stdlib_path

    tampered = bytearray(python_stdlib_path().read_bytes())
    tampered[5000] = ord("#") if tampered[5000] != ord("#") else ord("!")
    (tmp_path / "python-stdlib.txt").write_bytes(bytes(tampered))
    with pytest.raises(DataFileError, match=r"python-stdlib\.txt has sha256 .* altered"):
        load_python_stdlib(tmp_path)
    with pytest.raises(DataFileError, match="not found"):
        load_python_stdlib(tmp_path / "elsewhere")


def test_corpus_pair_shares_one_vocabulary_covering_both_texts():
    shakespeare, python = load_corpus_pair()
    assert shakespeare.vocabulary == python.vocabulary
    assert len(shakespeare.vocabulary) == 96
    assert set(load_corpus().vocabulary.chars) <= set(shakespeare.vocabulary.chars)
    assert (shakespeare.source, python.source) == ("tiny_shakespeare", "python_stdlib")
    assert shakespeare.vocabulary.decode(shakespeare.train_ids[:14]) == "First Citizen:"
    assert python.vocabulary.decode(python.val_ids) == python.text[int(0.9 * len(python.text)):]
    assert len(python.train_ids) == int(0.9 * 821_855)


def test_joint_vocabulary_is_validated():
    assert joint_vocabulary("ba", "ca").chars == "abc"
    with pytest.raises(ValueError, match="texts must hold"):
        joint_vocabulary()
    with pytest.raises(ValueError, match=r"texts\[1\] must be a non-empty str"):
        joint_vocabulary("ab", "")
