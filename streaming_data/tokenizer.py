"""Tokenizers for ingest: a byte-level one that needs no files, any Hugging Face tokenizer from a local
path, and training a small BPE tokenizer on the user's own text.

Every tokenizer here turns a batch of strings into int32 id arrays with no special tokens added; the
ingest adds the end-of-sequence id itself where a document, caption or turn ends. Batches go through the
``tokenizers`` library's Rust ``encode_batch_fast`` (both cores, no offsets computed), which is the rate the
text benchmark compares against.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from mixture.errors import MixtureError

BYTE_TOKENIZER = "bytes"
DEFAULT_EOS = "<|endoftext|>"
_EOS_CANDIDATES = (DEFAULT_EOS, "</s>", "<eos>", "<|end_of_text|>", "[SEP]")


class Tokenizer(Protocol):
    """What ingest needs from a tokenizer."""

    description: str
    eos_id: int
    vocab_size: int

    def encode_batch(self, texts: Sequence[str]) -> list[NDArray[np.int32]]:
        """Token ids of each text, no special tokens added."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids (what a model generated)."""
        ...


@dataclass(frozen=True)
class ByteTokenizer:
    """UTF-8 bytes as ids 0-255, end of sequence 256: no files, no training, 257 ids."""

    description: str = "bytes (UTF-8 bytes 0-255, eos 256)"
    eos_id: int = 256
    vocab_size: int = 257

    def encode_batch(self, texts: Sequence[str]) -> list[NDArray[np.int32]]:
        """Token ids of each text (its UTF-8 bytes)."""
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int32) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids (ids past 255 are dropped)."""
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face fast tokenizer loaded from a local ``tokenizer.json`` or a directory holding one."""

    def __init__(self, path: str, eos_token: str | None = None) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise MixtureError(
                f"tokenizer {path!r}: no tokenizer.json there",
                hint="pass `bytes`, a directory saved by a Hugging Face fast tokenizer, or train one with "
                "`mixture ingest train-tokenizer`",
            )
        self.file = os.path.abspath(file)
        try:
            self._tok = RustTokenizer.from_file(file)
        except Exception as exc:  # the Rust library reports bad files as plain exceptions
            raise MixtureError(f"tokenizer {file}: cannot be read ({exc})") from None
        eos = eos_token or _configured_eos(os.path.dirname(file))
        candidates = [eos] if eos else list(_EOS_CANDIDATES)
        ids = [self._tok.token_to_id(c) for c in candidates]
        found = [(c, i) for c, i in zip(candidates, ids) if i is not None]
        if not found:
            raise MixtureError(
                f"tokenizer {file}: no end-of-sequence token among {candidates}",
                hint="name it with --eos-token",
            )
        self.eos_token, self.eos_id = found[0]
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.description = f"{os.path.abspath(file)} (vocab {self.vocab_size}, eos {self.eos_token!r}={self.eos_id})"

    def encode_batch(self, texts: Sequence[str]) -> list[NDArray[np.int32]]:
        """Token ids of each text, no special tokens added."""
        encodings = self._tok.encode_batch_fast(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids (special tokens and ids outside the vocabulary skipped)."""
        return self._tok.decode([int(i) for i in ids if 0 <= i < self.vocab_size], skip_special_tokens=True)

    @property
    def directory(self) -> str:
        """The directory holding ``tokenizer.json`` (exports copy it)."""
        return os.path.dirname(self.file)


def _configured_eos(directory: str) -> str | None:
    path = os.path.join(directory, "tokenizer_config.json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        eos: Any = json.load(handle).get("eos_token")
    return eos.get("content") if isinstance(eos, dict) else eos


_DESCRIBED_PATH = re.compile(r"^(?P<path>.+?) \(vocab \d+")


def described_tokenizer(description: str) -> str | None:
    """The ``load_tokenizer`` spec behind a tokenizer's ``description`` (what ingest records in
    ``samples.parquet``): ``bytes``, the directory of a Hugging Face tokenizer, or ``None`` if unknown."""
    if description.startswith(BYTE_TOKENIZER):
        return BYTE_TOKENIZER
    match = _DESCRIBED_PATH.match(description)
    return os.path.dirname(match["path"]) if match else None


def load_tokenizer(spec: str, eos_token: str | None = None) -> Tokenizer:
    """``bytes`` -> :class:`ByteTokenizer`; anything else is a local Hugging Face tokenizer path."""
    if spec == BYTE_TOKENIZER:
        return ByteTokenizer()
    return HFTokenizer(spec, eos_token=eos_token)


def train_bpe(texts: Iterable[str], out_dir: str, *, vocab_size: int = 8192, min_frequency: int = 2) -> str:
    """Train a byte-level BPE tokenizer on ``texts`` and save it where :func:`load_tokenizer` (and
    ``transformers.AutoTokenizer``) can read it.

    Args:
        texts: The training text, one document per item.
        out_dir: Directory to write ``tokenizer.json`` and ``tokenizer_config.json`` into.
        vocab_size: Target vocabulary size, special tokens included (at least 300: 256 bytes + merges).
        min_frequency: A pair must occur this often to be merged.

    Returns:
        The directory written.
    """
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < 300:
        raise MixtureError(f"--vocab-size must be at least 300 (256 bytes + merges), got {vocab_size}")
    tok = RustTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[DEFAULT_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": DEFAULT_EOS, "bos_token": DEFAULT_EOS,
              "unk_token": DEFAULT_EOS, "model_max_length": 1 << 30}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as handle:
        json.dump(config, handle, indent=2)
    return out_dir
