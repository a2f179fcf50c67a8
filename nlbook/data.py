"""Corpora and synthetic tasks. Tiny Shakespeare ships in ``data/`` and is checked by sha256.

Nothing here downloads: the course must run offline.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from nlbook._checks import check_positive_int

__all__ = [
    "DATA_DIR",
    "PYTHON_STDLIB_SHA256",
    "TINY_SHAKESPEARE_SHA256",
    "TRAIN_FRACTION",
    "CharCorpus",
    "CharVocabulary",
    "ContiguousStreams",
    "DataFileError",
    "joint_vocabulary",
    "load_corpus",
    "load_corpus_pair",
    "load_python_stdlib",
    "load_text_file",
    "load_tiny_shakespeare",
    "make_corpus",
    "python_stdlib_path",
    "random_batch",
    "sequential_windows",
    "sha256_of_file",
    "split_train_val",
    "tiny_shakespeare_path",
]

#: ``data/`` at the top of the course repository (nlbook is installed with ``pip install -e .``).
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

#: karpathy/char-rnn ``data/tinyshakespeare/input.txt`` (1,115,394 bytes, 65 characters).
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


class DataFileError(ValueError):
    """A data file is missing or does not match its recorded checksum."""


def sha256_of_file(path: str | Path) -> str:
    """Hex sha256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tiny_shakespeare_path(data_dir: str | Path | None = None) -> Path:
    """Path of ``tinyshakespeare.txt`` in ``data_dir`` (default: the course's ``data/``)."""
    return Path(data_dir if data_dir is not None else DATA_DIR) / "tinyshakespeare.txt"


def load_tiny_shakespeare(data_dir: str | Path | None = None, *, verify: bool = True) -> str:
    """Read Tiny Shakespeare as one string, after checking its sha256.

    Args:
        data_dir: folder holding ``tinyshakespeare.txt``; the course's ``data/`` by default.
        verify: compare the file's sha256 with :data:`TINY_SHAKESPEARE_SHA256`.

    Raises:
        DataFileError: naming the file, if it is missing or its checksum differs (an altered
            or truncated file would silently change every loss in the course).
    """
    path = tiny_shakespeare_path(data_dir)
    if not path.is_file():
        raise DataFileError(
            f"Tiny Shakespeare not found at {path}. The course ships it in data/; restore it "
            f"with `git checkout -- data/tinyshakespeare.txt` (nothing is downloaded)."
        )
    if verify:
        found = sha256_of_file(path)
        if found != TINY_SHAKESPEARE_SHA256:
            raise DataFileError(
                f"{path} has sha256 {found}, expected {TINY_SHAKESPEARE_SHA256}: the file was "
                f"altered or truncated. Restore it with `git checkout -- data/tinyshakespeare.txt`."
            )
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Character corpora: vocabulary, the nanoGPT split, random-window batches (chapter 6)
# ---------------------------------------------------------------------------------------------

#: nanoGPT's ``data/shakespeare_char/prepare.py`` keeps the first 90% for training.
TRAIN_FRACTION = 0.9


def load_text_file(path: str | Path) -> str:
    """Read any UTF-8 text file as one string (a corpus for ``python -m nlbook.train --data``).

    Raises:
        DataFileError: naming the file, if it is missing, not UTF-8, or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"corpus file {path} does not exist (or is not a regular file)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataFileError(
            f"corpus file {path} is not valid UTF-8 (byte {error.start}): {error.reason}"
        ) from error
    if not text:
        raise DataFileError(f"corpus file {path} is empty")
    return text


class CharVocabulary:
    """A character-level vocabulary: the sorted distinct characters of a text.

    ``chars`` is a plain string, so a checkpoint stores the vocabulary as a string (loadable
    with ``torch.load(weights_only=True)``) and rebuilds it with ``CharVocabulary(chars)``.
    Tiny Shakespeare gives nanoGPT's 65 characters in nanoGPT's order (sorted code points).
    """

    def __init__(self, chars: str) -> None:
        if not isinstance(chars, str) or not chars:
            raise ValueError(f"chars must be a non-empty str, got {chars!r}")
        if len(set(chars)) != len(chars):
            raise ValueError(f"chars must hold each character once, got {chars!r}")
        self.chars = chars
        self._index = {char: index for index, char in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharVocabulary:
        """The vocabulary of every character that occurs in ``text``."""
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty str")
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharVocabulary({len(self)} characters)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocabulary) and other.chars == self.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def encode(self, text: str, *, name: str = "text") -> torch.Tensor:
        """Token ids of ``text``, shape (len(text),), int64.

        Raises:
            ValueError: naming ``name`` and the first character that is not in the vocabulary.
        """
        try:
            ids = [self._index[char] for char in text]
        except KeyError as error:
            raise ValueError(
                f"{name} contains the character {error.args[0]!r}, which is not in the "
                f"{len(self)}-character vocabulary"
            ) from None
        return torch.tensor(ids, dtype=torch.int64)

    def decode(self, ids) -> str:
        """The text of a sequence of token ids (a 1-D tensor, array or list of ints)."""
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1:
                raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        size = len(self)
        out = []
        for token in ids:
            if not 0 <= int(token) < size:
                raise ValueError(f"ids must lie in [0, {size}), got {token}")
            out.append(self.chars[int(token)])
        return "".join(out)


@dataclass(frozen=True)
class CharCorpus:
    """A text split as nanoGPT splits it: the first 90% trains, the last 10% validates.

    Attributes:
        text: the whole text.
        vocabulary: its characters (:class:`CharVocabulary`).
        train_ids: int64 tensor of shape (int(0.9 * len(text)),).
        val_ids: int64 tensor, the rest.
        source: where the text came from (a path, or ``"tiny_shakespeare"``).
        sha256: hex digest of the text's UTF-8 bytes (a resumed run checks it).
    """

    text: str
    vocabulary: CharVocabulary
    train_ids: torch.Tensor
    val_ids: torch.Tensor
    source: str
    sha256: str

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)


def split_train_val(ids: torch.Tensor, train_fraction: float = TRAIN_FRACTION
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a 1-D id tensor at ``int(train_fraction * len(ids))`` (nanoGPT's convention).

    Tiny Shakespeare gives 1,003,854 training and 111,540 validation characters.
    """
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1:
        raise ValueError("ids must be a 1-D tensor of token ids")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction!r}")
    cut = int(train_fraction * len(ids))
    return ids[:cut], ids[cut:]


def make_corpus(text: str, *, source: str = "text", vocabulary: CharVocabulary | None = None,
                train_fraction: float = TRAIN_FRACTION) -> CharCorpus:
    """Encode ``text`` (with its own vocabulary unless one is given) and split it."""
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty str")
    vocabulary = vocabulary if vocabulary is not None else CharVocabulary.from_text(text)
    ids = vocabulary.encode(text)
    train_ids, val_ids = split_train_val(ids, train_fraction)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return CharCorpus(text, vocabulary, train_ids, val_ids, source, digest)


def load_corpus(path: str | Path | None = None, *, train_fraction: float = TRAIN_FRACTION
                ) -> CharCorpus:
    """Tiny Shakespeare (sha256-checked) when ``path`` is None, else any UTF-8 text file."""
    if path is None:
        return make_corpus(load_tiny_shakespeare(), source="tiny_shakespeare",
                           train_fraction=train_fraction)
    return make_corpus(load_text_file(path), source=str(path), train_fraction=train_fraction)


def random_batch(ids: torch.Tensor, batch_size: int, context_length: int,
                 generator: torch.Generator, device: str | torch.device = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of a token stream, as nanoGPT's ``get_batch`` draws them.

    Args:
        ids: 1-D int64 tensor of token ids (on the CPU).
        batch_size: number of windows B.
        context_length: window length T.
        generator: a CPU ``torch.Generator``; the only source of randomness, so a run that
            saves and restores its state draws the same batches.
        device: where the returned tensors live.

    Returns:
        inputs, targets: int64 tensors of shape (B, T); ``targets`` is ``inputs`` shifted by
        one position (targets[b, t] = ids[start_b + t + 1]).
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("context_length", context_length)
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.dtype != torch.int64:
        raise ValueError("ids must be a 1-D int64 tensor of token ids")
    if len(ids) < context_length + 1:
        raise ValueError(
            f"ids has {len(ids)} tokens, fewer than context_length + 1 = {context_length + 1}; "
            f"use a shorter context or a longer text"
        )
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator)}")
    starts = torch.randint(len(ids) - context_length, (batch_size,), generator=generator)
    offsets = torch.arange(context_length)
    windows = starts[:, None] + offsets[None, :]
    inputs, targets = ids[windows], ids[windows + 1]
    return inputs.to(device), targets.to(device)


def sequential_windows(ids: torch.Tensor, context_length: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a token stream into consecutive non-overlapping windows that cover it exactly once.

    Used to score *every* validation character once. The last window may be shorter, so the
    windows come back as one padded pair and a mask.

    Returns:
        inputs, targets: int64 (N, T); ``targets`` is -1 where padded (the ignore index).
    """
    check_positive_int("context_length", context_length)
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or len(ids) < 2:
        raise ValueError("ids must be a 1-D tensor with at least 2 tokens")
    n_targets = len(ids) - 1
    n_windows = -(-n_targets // context_length)
    padded = n_windows * context_length
    inputs = torch.zeros(padded, dtype=torch.int64)
    targets = torch.full((padded,), -1, dtype=torch.int64)
    inputs[:n_targets] = ids[:-1]
    targets[:n_targets] = ids[1:]
    return inputs.view(n_windows, context_length), targets.view(n_windows, context_length)


class ContiguousStreams:
    """B contiguous streams of a token sequence, read one window per call (stateful training).

    Row b reads ``ids`` from a start position on, window after window: the window of call n is
    ``inputs[b] = ids[p_b + nT : p_b + (n+1)T]`` and ``targets[b]`` the same shifted by one, so
    consecutive optimizer steps continue the same texts and a model can carry its state from
    one window to the next.

    How streams start and restart, and why:
    - A stream starts at a position drawn uniformly (from ``generator``) among those that leave
      room for a whole stream of ``stream_length`` tokens, so every part of the text is read.
    - It restarts (at a new random position, with a fresh state: ``restarted[b]`` is True) after
      ``stream_length`` tokens. Without restarts, consecutive batches would all come from the
      same B places of the text, slowly moving on, so the optimizer would see correlated batches
      for the whole run (measured: worse), and the meta-learned initial state would be trained
      only on the first window.
    - Restarts are staggered: row b's first stream is shortened by a share of ``stream_length``
      so that at every step about B / (stream_length / T) rows restart. Every batch then mixes
      fresh and long-carried states, and the gradient of each step sees both.
    - A restart falls only at a multiple of ``alignment`` tokens counted from the first call
      (for HOPE, :meth:`nlbook.hope.HopeLM.stream_alignment`): every in-context level has just
      closed a chunk there, so a restarted row is exactly a stream read from its start.
    ``stream_length=None``: a stream never restarts, except at the end of the text.

    ``state_dict()`` / ``load_state_dict()`` hold the positions (a checkpoint stores them, so a
    resumed run reads exactly the windows of an uninterrupted one; the generator's state is
    saved by the caller).
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, context_length: int, *,
                 stream_length: int | None, generator: torch.Generator,
                 alignment: int = 1) -> None:
        check_positive_int("batch_size", batch_size)
        check_positive_int("context_length", context_length)
        check_positive_int("alignment", alignment)
        if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.dtype != torch.int64:
            raise ValueError("ids must be a 1-D int64 tensor of token ids")
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator)}")
        # Windows between two possible restarts: the restart grid in windows.
        grid = alignment // math.gcd(alignment, context_length)
        if stream_length is not None:
            check_positive_int("stream_length", stream_length)
            if stream_length % context_length or (stream_length // context_length) % grid:
                raise ValueError(
                    f"stream_length must be a multiple of context_length ({context_length}) "
                    f"and of the alignment grid ({grid * context_length} tokens: every "
                    f"in-context chunk closes there), got {stream_length}")
            windows = stream_length // context_length
        else:
            windows = None
        span = (windows if windows is not None else 1) * context_length + 1
        if len(ids) < span:
            raise ValueError(f"ids has {len(ids)} tokens, fewer than one stream needs "
                             f"({span}); use a shorter stream_length or context_length")
        self.ids, self.batch_size, self.context_length = ids, batch_size, context_length
        self.stream_length, self.windows, self.grid = stream_length, windows, grid
        self.generator = generator
        self.positions = torch.zeros(batch_size, dtype=torch.int64)
        # Windows left before each row restarts (0: restart at the next call).
        self.windows_left = torch.zeros(batch_size, dtype=torch.int64)
        self.calls = 0

    def _first_lengths(self) -> torch.Tensor:
        """Staggered lengths of the first streams (whole multiples of the restart grid)."""
        if self.windows is None:
            return torch.full((self.batch_size,), -1, dtype=torch.int64)
        slots = self.windows // self.grid
        shares = [(self.windows - self.grid * ((row * slots) // self.batch_size))
                  for row in range(self.batch_size)]
        return torch.tensor(shares, dtype=torch.int64)

    def _start(self, rows: torch.Tensor) -> None:
        count = int(rows.sum())
        room = len(self.ids) - (self.windows or 1) * self.context_length
        starts = torch.randint(room, (count,), generator=self.generator)
        self.positions[rows] = starts

    def next_batch(self, device: str | torch.device = "cpu"
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next window of every stream -> inputs (B, T), targets (B, T) int64 and
        restarted (B,) bool (rows that begin a new stream at this window)."""
        length = self.context_length
        if self.calls == 0:
            restarted = torch.ones(self.batch_size, dtype=torch.bool)
            self._start(restarted)
            self.windows_left = self._first_lengths()
        else:
            restarted = self.windows_left == 0
            if self.windows is None:  # no restarts: only at the end of the text
                restarted = self.positions + length + 1 > len(self.ids)
            if bool(restarted.any()):
                self._start(restarted)
                if self.windows is not None:
                    self.windows_left[restarted] = self.windows
        windows = self.positions[:, None] + torch.arange(length)[None, :]
        inputs, targets = self.ids[windows], self.ids[windows + 1]
        self.positions += length
        if self.windows is not None:
            self.windows_left -= 1
        self.calls += 1
        return inputs.to(device), targets.to(device), restarted.to(device)

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """Positions, windows left and the call count (plain tensors and ints)."""
        return {"positions": self.positions.clone(), "windows_left": self.windows_left.clone(),
                "calls": self.calls}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        """Restore :meth:`state_dict` (same batch size)."""
        positions = state["positions"]
        if not isinstance(positions, torch.Tensor) or positions.shape != (self.batch_size,):
            raise ValueError(f"state holds positions for another batch size, expected "
                             f"({self.batch_size},), got {getattr(positions, 'shape', None)}")
        self.positions = positions.clone()
        self.windows_left = state["windows_left"].clone()
        self.calls = int(state["calls"])


# ---------------------------------------------------------------------------------------------
# The second corpus (chapter 7, continual learning): a snapshot of CPython's standard library
# ---------------------------------------------------------------------------------------------

#: ``data/python-stdlib.txt``: 40 modules of CPython 3.11.7's ``Lib/`` concatenated unchanged
#: (821,855 bytes, 96 ASCII characters; PSF licence, provenance in ``data/SOURCE-python.md``).
PYTHON_STDLIB_SHA256 = "c1346dabfcb300a9cf98179a2cc350f13eadd67803332c49aca21dd7ed7bd250"


def python_stdlib_path(data_dir: str | Path | None = None) -> Path:
    """Path of ``python-stdlib.txt`` in ``data_dir`` (default: the course's ``data/``)."""
    return Path(data_dir if data_dir is not None else DATA_DIR) / "python-stdlib.txt"


def load_python_stdlib(data_dir: str | Path | None = None, *, verify: bool = True) -> str:
    """Read the CPython standard-library snapshot as one string, after checking its sha256.

    Raises:
        DataFileError: naming the file, if it is missing or its checksum differs.
    """
    path = python_stdlib_path(data_dir)
    restore = "Restore it with `git checkout -- data/python-stdlib.txt` (nothing is downloaded)."
    if not path.is_file():
        raise DataFileError(f"the Python standard-library corpus was not found at {path}. "
                            f"The course ships it in data/. {restore}")
    if verify:
        found = sha256_of_file(path)
        if found != PYTHON_STDLIB_SHA256:
            raise DataFileError(f"{path} has sha256 {found}, expected {PYTHON_STDLIB_SHA256}: "
                                f"the file was altered or truncated. {restore}")
    return path.read_text(encoding="utf-8")


def joint_vocabulary(*texts: str) -> CharVocabulary:
    """One vocabulary for several texts: the sorted distinct characters of all of them.

    Tiny Shakespeare + the standard-library snapshot gives 96 characters (Shakespeare's 65
    are a subset), so one character model can be trained on both.
    """
    if not texts:
        raise ValueError("texts must hold at least one non-empty str, got none")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise ValueError(f"texts[{index}] must be a non-empty str, got {type(text).__name__}")
    return CharVocabulary("".join(sorted(set().union(*texts))))


def load_corpus_pair(*, train_fraction: float = TRAIN_FRACTION, data_dir: str | Path | None = None
                     ) -> tuple[CharCorpus, CharCorpus]:
    """Tiny Shakespeare and the standard-library snapshot, both sha256-checked and encoded with
    one joint vocabulary (:func:`joint_vocabulary`), each split 90/10 as nanoGPT splits.

    Returns:
        (shakespeare, python): two :class:`CharCorpus` with the same ``vocabulary`` (96
        characters), sources ``"tiny_shakespeare"`` and ``"python_stdlib"``.
    """
    shakespeare = load_tiny_shakespeare(data_dir)
    python = load_python_stdlib(data_dir)
    vocabulary = joint_vocabulary(shakespeare, python)
    return (make_corpus(shakespeare, source="tiny_shakespeare", vocabulary=vocabulary,
                        train_fraction=train_fraction),
            make_corpus(python, source="python_stdlib", vocabulary=vocabulary,
                        train_fraction=train_fraction))
