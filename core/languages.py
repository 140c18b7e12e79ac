"""Language codes, display names, target tags and translation directions.

A direction is a string "src-tgt" (e.g. "en-de"). The model learns which language to produce
from a tag `<2de>` put in front of the source sentence (Johnson et al. 2017), so one model
serves every direction.
"""

from __future__ import annotations

import itertools

LANGUAGE_NAMES: dict[str, str] = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "cs": "Czech",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "pl": "Polish",
    "ru": "Russian",
    "uk": "Ukrainian",
    "sv": "Swedish",
    "da": "Danish",
    "fi": "Finnish",
    "tr": "Turkish",
    "ar": "Arabic",
    "he": "Hebrew",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "hi": "Hindi",
    "el": "Greek",
    "hu": "Hungarian",
    "ro": "Romanian",
    "sk": "Slovak",
}


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def tag(lang: str) -> str:
    """The target-language tag the encoder sees first, e.g. `<2de>`."""
    return f"<2{lang}>"


def check_language_code(code: str) -> str:
    """Language codes are short lowercase letters (ISO 639-1 style); anything else is refused."""
    if not (2 <= len(code) <= 8 and code.isascii() and code.isalpha() and code.islower()):
        raise ValueError(f"Invalid language code {code!r}: use lowercase letters such as 'en' or 'de'")
    return code


def direction(src: str, tgt: str) -> str:
    return f"{src}-{tgt}"


def split_direction(name: str) -> tuple[str, str]:
    parts = name.strip().split("-")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"Invalid direction {name!r}: write it as SRC-TGT, e.g. en-de")
    return parts[0], parts[1]


def parse_directions(spec: str, languages: list[str]) -> list[str]:
    """Turn a directions spec into an ordered list of "src-tgt" strings.

    - "all": every ordered pair of different languages;
    - "en-centric" (or "X-centric" for any pivot X): X→other and other→X;
    - "en-de,de-en,...": exactly those, each checked against `languages`.
    """
    spec = spec.strip()
    if not spec or spec == "all":
        return [direction(s, t) for s, t in itertools.permutations(languages, 2)]
    if spec.endswith("-centric"):
        pivot = spec.removesuffix("-centric")
        if pivot not in languages:
            raise ValueError(f"Pivot language {pivot!r} of {spec!r} is not among {languages}")
        others = [lang for lang in languages if lang != pivot]
        return [direction(pivot, o) for o in others] + [direction(o, pivot) for o in others]
    result = []
    for item in spec.split(","):
        src, tgt = split_direction(item)
        for lang in (src, tgt):
            if lang not in languages:
                raise ValueError(f"Direction {item.strip()!r} uses {lang!r}, which is not among {languages}")
        if src == tgt:
            raise ValueError(f"Direction {item.strip()!r} translates a language into itself")
        if direction(src, tgt) not in result:
            result.append(direction(src, tgt))
    return result
