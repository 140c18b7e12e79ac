"""One shared SentencePiece vocabulary for every language, with target tags as whole symbols.

Sharing the vocabulary lets related languages share pieces (names, numbers, cognates) and lets
one embedding matrix serve the encoder, the decoder and the output layer. The tags `<2xx>` are
user-defined symbols, so they are never split into pieces.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterable
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
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
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
