"""One shared SentencePiece vocabulary for every language, with target tags as whole symbols.

Sharing the vocabulary lets related languages share pieces (names, numbers, cognates) and lets
one embedding matrix serve the encoder, the decoder and the output layer. The tags `<2xx>` are
user-defined symbols, so they are never split into pieces.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from core.languages import tag
from core.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID


class Tokenizer:
    def __init__(self, model_proto: bytes, languages: list[str]) -> None:
        self.model_proto = model_proto
        self.languages = list(languages)
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
        self.tag_ids = {lang: self.processor.piece_to_id(tag(lang)) for lang in self.languages}
        missing = [lang for lang, i in self.tag_ids.items() if i == UNK_ID]
        if missing:
            raise ValueError(f"Tokenizer has no tag for {missing}")

    @classmethod
    def train(
        cls,
        texts: dict[str, list[str]],
        vocab_size: int,
        model_type: str = "unigram",
        sentences_per_language: int = 30000,
        seed: int = 1,
    ) -> Tokenizer:
        """Train on `texts` ({lang: sentences}), sampling the same number of sentences from each
        language so that a big language does not crowd the others out of the vocabulary."""
        if model_type not in ("unigram", "bpe"):
            raise ValueError(f"tokenizer type must be 'unigram' or 'bpe', not {model_type!r}")
        languages = sorted(texts)
        sample = balanced_sample(texts, sentences_per_language, seed)
        model = io.BytesIO()
        spm.set_random_generator_seed(seed)
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sample),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            user_defined_symbols=[tag(lang) for lang in languages],
            hard_vocab_limit=False,  # small corpora may not support the requested size
            num_threads=2,
            minloglevel=2,
        )
        return cls(model.getvalue(), languages)

    @classmethod
    def load(cls, path: str | Path, languages: list[str]) -> Tokenizer:
        return cls(Path(path).read_bytes(), languages)

    def __len__(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(text)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return self.processor.encode(list(texts))

    def decode(self, ids: list[int]) -> str:
        return self.processor.decode([i for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)]).strip()

    def pieces(self, ids: Iterable[int]) -> list[str]:
        return [self.processor.id_to_piece(int(i)) for i in ids]

    def tag_id(self, lang: str) -> int:
        if lang not in self.tag_ids:
            raise ValueError(f"Unknown language {lang!r}; this tokenizer knows {', '.join(self.languages)}")
        return self.tag_ids[lang]

    def extend(self, texts: dict[str, list[str]], pieces_per_language: int, seed: int = 1) -> Tokenizer:
        """This vocabulary grown for the new languages of `texts` ({lang: sentences}): a `<2xx>` tag
        for each, and the pieces that a tokenizer trained on their text finds and this one lacks.

        Every old piece keeps its id, so a trained model's embedding rows keep their meaning and
        only new rows are added (see `core.finetune`). The new pieces come with the scores their
        own unigram model gave them, so SentencePiece's segmentation weighs them like the old ones;
        text in the old languages may now and then segment differently where a new piece scores
        better.
        """
        new = sorted(lang for lang in texts if lang not in self.languages)
        if not new:
            return self
        learned = Tokenizer.train(
            {lang: texts[lang] for lang in new}, pieces_per_language, "unigram", sentences_per_language=30000, seed=seed
        )
        tags = [tag(lang) for lang in new]
        records = [_piece_record(piece, 0.0, USER_DEFINED) for piece in tags]
        bpe = self.model_type == BPE
        lowest = min(self.processor.get_score(i) for i in range(len(self)))
        for i in range(len(learned)):
            piece = learned.processor.id_to_piece(i)
            special = learned.processor.is_unknown(i) or learned.processor.is_control(i) or piece in tags
            if special or self.processor.piece_to_id(piece) != UNK_ID:
                continue
            # Unigram scores are log-probabilities; BPE scores are merge ranks, so new merges go last.
            score = lowest - 1 - i if bpe else learned.processor.get_score(i)
            records.append(_piece_record(piece, score, NORMAL))
        return Tokenizer(self.model_proto + b"".join(records), [*self.languages, *new])

    @property
    def model_type(self) -> int:
        """`TrainerSpec.model_type` of the model file: UNIGRAM (1) or BPE (2)."""
        trainer_spec = next(value for number, value in _fields(self.model_proto) if number == 2)
        return next((value for number, value in _fields(trainer_spec) if number == 3), UNIGRAM)

    def source_ids(self, text: str, target_lang: str) -> list[int]:
        """What the encoder reads: `<2tgt> pieces… </s>`."""
        return [self.tag_id(target_lang), *self.encode(text), EOS_ID]


def balanced_sample(texts: dict[str, list[str]], per_language: int, seed: int = 1) -> list[str]:
    """The same number of non-empty sentences from every language (as many as the smallest has,
    at most `per_language`), shuffled together."""
    rng = random.Random(seed)
    non_empty = {lang: [line for line in texts[lang] if line.strip()] for lang in sorted(texts)}
    count = min(per_language, min(len(lines) for lines in non_empty.values()))
    sample = [line for lines in non_empty.values() for line in rng.sample(lines, count)]
    rng.shuffle(sample)
    return sample


# --- the model file, written by hand ---------------------------------------------------------
# A SentencePiece model is a serialized protobuf `ModelProto` whose field 1 is the repeated list
# of pieces. Protobuf concatenates repeated fields in the order they appear, so appending piece
# records to the bytes appends pieces to the vocabulary: no protobuf dependency is needed.

NORMAL, USER_DEFINED = 1, 4  # sentencepiece_model.proto: SentencePiece.Type
UNIGRAM, BPE = 1, 2  # sentencepiece_model.proto: TrainerSpec.ModelType


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """The top-level (field number, value) pairs of a protobuf message; enough to read a model_type."""
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, at = _read_varint(data, at)
        elif wire_type == 2:
            length, at = _read_varint(data, at)
            value, at = data[at : at + length], at + length
        else:  # fixed 32 (5) or 64 (1) bits
            size = 4 if wire_type == 5 else 8
            value, at = data[at : at + size], at + size
        yield number, value


def _piece_record(piece: str, score: float, kind: int) -> bytes:
    """One `ModelProto.pieces` entry: {1: piece (string), 2: score (float), 3: type (enum)}."""
    text = piece.encode("utf-8")
    body = b"\x0a" + _varint(len(text)) + text + b"\x15" + struct.pack("<f", score) + b"\x18" + _varint(kind)
    return b"\x0a" + _varint(len(body)) + body
