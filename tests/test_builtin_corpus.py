"""Tests for the built-in generated corpus (core/builtin_corpus.py)."""

from __future__ import annotations

import random
import re

import pytest

from core import builtin_corpus as bc
from core.builtin_corpus import BUILTIN_LANGUAGES, NP, Clause, generate_corpus, realize

EN_NUMBER_WORDS = {"Two", "Three", "Four", "Five"}


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[str]]:
    return generate_corpus()  # the default 8000 sentences, as used for training


def _words(sentence: str) -> list[str]:
    return sentence.rstrip(".").split()


def _third_person_forms(table: dict[str, str]) -> tuple[set[str], set[str]]:
    """First word of every 3rd-person singular and plural verb form in a verb table."""
    singular, plural = set(), set()
    for verb in table:
        forms = bc._forms(table, verb)
        singular.add(forms[2].split()[0])
        plural.add(forms[4].split()[0])
    return singular, plural


# --- API, size, determinism -----------------------------------------------------------------


def test_languages_and_alignment(corpus: dict[str, list[str]]) -> None:
    assert BUILTIN_LANGUAGES == ("en", "de", "fr", "cs", "es")
    assert tuple(corpus) == BUILTIN_LANGUAGES
    assert {len(lines) for lines in corpus.values()} == {8000}


@pytest.mark.parametrize("n", [0, 1, 37, 500])
def test_sentence_count(n: int) -> None:
    lines = generate_corpus(n, seed=3)
    assert all(len(lines[lang]) == n for lang in BUILTIN_LANGUAGES)


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError):
        generate_corpus(-1)


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    assert generate_corpus(300, seed=5) == generate_corpus(300, seed=5)
    assert generate_corpus(300, seed=5)["en"] != generate_corpus(300, seed=6)["en"]


def test_does_not_touch_global_random_state() -> None:
    random.seed(123)
    expected = random.random()
    random.seed(123)
    generate_corpus(200, seed=1)
    assert random.random() == expected


def test_english_sentences_are_distinct(corpus: dict[str, list[str]]) -> None:
    assert len(set(corpus["en"])) == len(corpus["en"])


def test_many_distinct_sentences_are_reachable() -> None:
    lines = generate_corpus(20000, seed=11)
    assert len(set(lines["en"])) == 20000
    # Other languages may merge a few lines (Czech has no articles: "the dog"/"a dog" = "pes").
    for lang in ("de", "fr", "es", "cs"):
        assert len(set(lines[lang])) > 19000


def test_generation_computes_each_candidate_list_once() -> None:
    """Generation stays fast because the candidate lists are computed once per distinct argument
    and then reused: counted with the caches' statistics, not with a clock (flaky on a busy machine)."""
    helpers = (bc._fits, bc._nouns_fitting, bc._adjs_fitting, bc._dets_allowed, bc._places_for)
    for helper in helpers:
        helper.cache_clear()
    generate_corpus(8000, seed=2)
    for helper in helpers:
        info = helper.cache_info()
        assert info.misses <= 300, (helper.__name__, info)  # one computation per distinct argument
        assert info.hits >= 20 * info.misses, (helper.__name__, info)  # reused thousands of times


# --- lexicon tables are complete ------------------------------------------------------------


def test_lexicon_tables_cover_the_same_words() -> None:
    for table in (bc.EN_NOUNS, bc.DE_NOUNS, bc.FR_NOUNS, bc.ES_NOUNS, bc.CS_NOUNS):
        assert table.keys() == bc.NOUN_TAGS.keys()
    for table in (bc.EN_ADJ, bc.DE_ADJ, bc.FR_ADJ, bc.ES_ADJ, bc.CS_ADJ):
        assert table.keys() == bc.ADJ_TAGS.keys()
    for table in (bc.EN_VERBS, bc.DE_VERBS, bc.FR_VERBS, bc.ES_VERBS, bc.CS_VERBS):
        assert table.keys() == bc.VERBS.keys()
        assert all(len(bc._forms(table, verb)) == 5 for verb in table)
    for table in (bc.EN_PLACES, bc.DE_PLACES, bc.FR_PLACES, bc.ES_PLACES, bc.CS_PLACES):
        assert table.keys() == bc.PLACE_TAGS.keys()
        assert all(value.count("|") == 1 for value in table.values())
    for key in bc.CS_NOUNS:
        gender, singular, plural = bc._cs_noun(key)
        assert gender in "mifn" and len(singular) == len(plural) == 5, key
    for entry in bc.FR_ADJ.values():
        assert entry.split()[0] in ("pre", "post") and len(entry.split()) in (5, 6)


# --- surface form ---------------------------------------------------------------------------


def test_capital_start_final_punctuation_and_length(corpus: dict[str, list[str]]) -> None:
    for lang, lines in corpus.items():
        for sentence in lines:
            assert sentence[0].isupper(), (lang, sentence)
            assert sentence.endswith(".") and not sentence.endswith(" ."), (lang, sentence)
            assert "  " not in sentence and sentence == sentence.strip(), (lang, sentence)
            assert 2 <= len(sentence.split()) <= 16, (lang, sentence)
    assert all(4 <= len(s.split()) <= 14 for s in corpus["en"])


def test_only_german_capitalises_nouns(corpus: dict[str, list[str]]) -> None:
    for lang in ("fr", "es", "cs"):
        for sentence in corpus[lang]:
            assert not any(w[0].isupper() for w in _words(sentence)[1:]), (lang, sentence)
    for sentence in corpus["en"]:
        assert all(w == "I" or not w[0].isupper() for w in _words(sentence)[1:]), sentence


def test_german_nouns_are_capitalised(corpus: dict[str, list[str]]) -> None:
    nouns = {form for entry in bc.DE_NOUNS.values() for form in entry.split()[1:]}
    nouns |= {w for entry in bc.DE_PLACES.values() for w in entry.split() if w[0].isupper()}
    nouns.add("Angst")  # "Angst haben vor" = to be afraid of
    assert all(form[0].isupper() for form in nouns)
    # lowercase words that merely look like nouns: "jungen" (adjective) vs. "Jungen" (boys)
    lowercase_words = {form.lower() for form in nouns} & {
        stem + ending for stem in bc.DE_ADJ.values() for ending in ("e", "en", "er", "es")
    }
    for sentence in corpus["de"]:
        for word in _words(sentence)[1:]:
            if word[0].isupper():
                assert word in nouns, (word, sentence)
            else:
                assert word.capitalize() not in nouns or word in lowercase_words, (word, sentence)


def test_english_a_and_an(corpus: dict[str, list[str]]) -> None:
    for sentence in corpus["en"]:
        assert not re.search(r"\b[Aa] [aeio]", sentence), sentence
        assert not re.search(r"\b[Aa]n [^aeio]", sentence), sentence


# --- agreement and case ---------------------------------------------------------------------


def test_german_verb_agrees_with_number_subject(corpus: dict[str, list[str]]) -> None:
    singular, plural = _third_person_forms(bc.DE_VERBS)
    animal_singular, animal_plural = _third_person_forms(bc.DE_ANIMAL_VERBS)
    singular, plural = singular | animal_singular | {"ist"}, plural | animal_plural | {"sind"}
    en_plural_nouns = {entry.split()[1] for entry in bc.EN_NOUNS.values()}
    en_singular_nouns = {entry.split()[0] for entry in bc.EN_NOUNS.values()}
    checked_plural = checked_singular = 0
    for en, de in zip(corpus["en"], corpus["de"]):
        en_words, de_words = _words(en), set(_words(de))
        subject_head = en_words[1:3]  # "The dogs" / "Two big dogs" / "The big dog"
        if en_words[0] in EN_NUMBER_WORDS or (en_words[0] == "The" and en_plural_nouns & set(subject_head)):
            assert de_words & plural and not de_words & singular, (en, de)
            checked_plural += 1
        elif en_words[0] in ("The", "A", "An") and en_singular_nouns & set(subject_head):
            assert de_words & singular and not de_words & plural, (en, de)
            checked_singular += 1
    assert checked_plural > 1000 and checked_singular > 1000


def test_czech_five_takes_singular_verb(corpus: dict[str, list[str]]) -> None:
    """Czech: "dva psi běží / čtyři chlapci jdou", but "pět chlapců jde" (3rd person singular)."""
    singular, plural = _third_person_forms(bc.CS_VERBS)
    only_singular, only_plural = singular - plural, plural - singular
    seen_five = seen_two_to_four = 0
    for cs in corpus["cs"]:
        words = set(_words(cs))
        first = _words(cs)[0]
        if first == "Pět":
            assert not words & only_plural, cs
            seen_five += 1
        elif first in ("Dva", "Dvě", "Tři", "Čtyři"):
            assert not words & only_singular, cs
            seen_two_to_four += 1
    assert seen_five > 100 and seen_two_to_four > 100


def test_french_elision_and_contractions(corpus: dict[str, list[str]]) -> None:
    for sentence in corpus["fr"]:
        # never "le oiseau", "la école", "de un", "je attends", "le homme"
        assert not re.search(r"\b([Ll][ea]|de|[Jj]e) [aeiouéèêœ]", sentence), sentence
        assert not re.search(r"\b[Ll][ea] hommes?\b", sentence), sentence
        assert not re.search(r"\b(à|de) les?\b", sentence), sentence  # au, aux, du, des
    assert any(re.search(r"\bl'[aeiouéœh]", s) for s in corpus["fr"])
    assert any(" au " in s for s in corpus["fr"]) and any(" du " in s for s in corpus["fr"])


def test_spanish_contractions(corpus: dict[str, list[str]]) -> None:
    for sentence in corpus["es"]:
        assert not re.search(r"\b(a|de) el\b", sentence), sentence
    assert any(" del " in s for s in corpus["es"]) and any(" al " in s for s in corpus["es"])


def test_czech_with_is_vocalised() -> None:
    assert bc._cs_with("psem") == "se psem"
    assert bc._cs_with("sestrou") == "se sestrou"
    assert bc._cs_with("lvem") == "se lvem"
    assert bc._cs_with("zeleným ptákem") == "se zeleným ptákem"
    assert bc._cs_with("kočkou") == "s kočkou"
    assert bc._cs_with("malým psem") == "s malým psem"


# --- golden sentences: exact translations of hand-built meanings ----------------------------

GOLDEN: list[tuple[Clause, dict[str, str]]] = [
    (  # dative object in German and Czech, weak noun, personal "a", elision
        Clause("obj", NP("boy", "the", False), "help", NP("elephant", "a", False, adj="old")),
        {
            "en": "The boy helps an old elephant.",
            "de": "Der Junge hilft einem alten Elefanten.",
            "fr": "Le garçon aide un vieil éléphant.",
            "cs": "Chlapec pomáhá starému slonovi.",
            "es": "El niño ayuda a un elefante viejo.",
        },
    ),
    (  # Czech 5 + genitive plural + singular verb; German "fressen" for animals
        Clause("obj", NP("dog", "num", True, 5, "hungry"), "eat", NP("apple", "the", True)),
        {
            "en": "Five hungry dogs eat the apples.",
            "de": "Fünf hungrige Hunde fressen die Äpfel.",
            "fr": "Cinq chiens affamés mangent les pommes.",
            "cs": "Pět hladových psů jí jablka.",
            "es": "Cinco perros hambrientos comen las manzanas.",
        },
    ),
    (  # companion: German dative, Czech "se" + instrumental and clitic "si", French l'
        Clause("with", NP("girl", "the", False), "play", companion=NP("bird", "the", False), place="garden"),
        {
            "en": "The girl plays with the bird in the garden.",
            "de": "Das Mädchen spielt mit dem Vogel im Garten.",
            "fr": "La fille joue avec l'oiseau dans le jardin.",
            "cs": "Dívka si hraje s ptákem na zahradě.",
            "es": "La niña juega con el pájaro en el jardín.",
        },
    ),
    (  # pronoun subject: French j', pro-drop in Spanish and Czech, contraction du / del
        Clause("obj", 0, "afraid", NP("dog", "the", False)),
        {
            "en": "I am afraid of the dog.",
            "de": "Ich habe Angst vor dem Hund.",
            "fr": "J'ai peur du chien.",
            "cs": "Bojím se psa.",
            "es": "Tengo miedo del perro.",
        },
    ),
    (  # animate plural adjective in Czech, ser vs. estar, predicative agreement
        Clause("pred", NP("friend", "the", True), pred_adj="tired"),
        {
            "en": "The friends are tired.",
            "de": "Die Freunde sind müde.",
            "fr": "Les amis sont fatigués.",
            "cs": "Přátelé jsou unavení.",
            "es": "Los amigos están cansados.",
        },
    ),
    (  # direction vs. location phrases, "se" before "psem", word order per language
        Clause("with", NP("man", "the", False), "go", companion=NP("dog", "a", False), place="park"),
        {
            "en": "The man goes to the park with a dog.",
            "de": "Der Mann geht mit einem Hund in den Park.",
            "fr": "L'homme va au parc avec un chien.",
            "cs": "Muž jde se psem do parku.",
            "es": "El hombre va al parque con un perro.",
        },
    ),
    (  # feminine/neuter numerals, accusative adjective, aux / à la
        Clause("obj", NP("woman", "num", True, 2), "talk", NP("cow", "the", True, adj="brown"), place="beach"),
        {
            "en": "Two women talk to the brown cows on the beach.",
            "de": "Zwei Frauen sprechen mit den braunen Kühen am Strand.",
            "fr": "Deux femmes parlent aux vaches brunes sur la plage.",
            "cs": "Dvě ženy mluví s hnědými kravami na pláži.",
            "es": "Dos mujeres hablan con las vacas marrones en la playa.",
        },
    ),
    (  # masculine accusative in German (einen), inanimate accusative in Czech
        Clause("obj", NP("student", "the", False, adj="young"), "buy", NP("hat", "a", False, adj="black"), place="market"),
        {
            "en": "The young student buys a black hat at the market.",
            "de": "Der junge Student kauft einen schwarzen Hut auf dem Markt.",
            "fr": "Le jeune étudiant achète un chapeau noir au marché.",
            "cs": "Mladý student kupuje černý klobouk na trhu.",
            "es": "El estudiante joven compra un sombrero negro en el mercado.",
        },
    ),
]


@pytest.mark.parametrize("clause, expected", GOLDEN)
def test_golden_sentences(clause: Clause, expected: dict[str, str]) -> None:
    assert realize(clause) == expected
