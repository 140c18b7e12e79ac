"""Polyglot Lab's built-in parallel corpus: a small compositional grammar in five languages.

Every sentence is built twice over: first as a language-neutral *meaning* (who does what to
whom, where, with which determiner, adjective and number), then that meaning is *realised*
separately in English, German, French, Czech and Spanish by small rule functions. Because all
five sentences come from the same meaning, line i of every language is a translation of line i
of every other.

The vocabulary is deliberately small (about 100 lemmas per language) so a tiny Transformer can
learn it in minutes, but the grammar is real:

* gender and number agreement of articles and adjectives (der/die/das, le/la/les/l',
  el/la/los/las, Czech -ý/-á/-é/-í),
* case: German accusative/dative after verbs and prepositions, Czech accusative, genitive,
  dative and instrumental (the noun forms are stored per noun, not derived),
* subject-verb agreement in person and number, including Czech "pět psů běží" (5+ takes a
  singular verb and a genitive plural noun),
* French elision and contractions (l'oiseau, au, du, aux, d'un), Spanish al/del and the
  personal "a", German "fressen" for animals, Spanish ser vs. estar, pro-drop subjects in
  Spanish and Czech, Czech clitic "si"/"se" in second position.

Nothing here is copied from an existing data set: the tables were written for this project.
Only the standard library is used, and generating 8000 sentences takes a few tens of ms.
"""

from __future__ import annotations

import random
from functools import cache
from itertools import accumulate
from typing import NamedTuple

BUILTIN_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "cs", "es")

# ============================================================================================
# 1. Lexicon: plain tables, one per language, all keyed by the same English lemma.
# ============================================================================================

# Semantic tags decide which words may combine ("the cat reads the book" is grammatical but
# silly, so "read" only takes a "person" subject and a "readable" object).
NOUN_TAGS: dict[str, str] = {
    # people
    "man": "person adult",
    "woman": "person adult",
    "boy": "person",
    "girl": "person",
    "teacher": "person adult",
    "doctor": "person adult",
    "student": "person adult",
    "farmer": "person adult",
    "king": "person adult",
    "queen": "person adult",
    "sister": "person",
    "brother": "person",
    "friend": "person adult",
    # animals ("bird" = may fly)
    "dog": "animal",
    "cat": "animal",
    "horse": "animal",
    "bird": "animal bird",
    "cow": "animal",
    "mouse": "animal",
    "elephant": "animal",
    "lion": "animal",
    "bear": "animal",
    "duck": "animal bird",
    "monkey": "animal",
    "rabbit": "animal",
    # food
    "apple": "food portable throwable",
    "cake": "food portable",
    "egg": "food portable",
    "orange": "food portable throwable",
    # things
    "book": "thing portable readable openable",
    "letter": "thing portable readable openable",
    "ball": "thing portable throwable",
    "car": "thing vehicle washable",
    "flower": "thing portable",
    "house": "thing",
    "bicycle": "thing vehicle washable",
    "hat": "thing portable throwable",
    "key": "thing portable throwable",
    "cup": "thing portable washable",
    "box": "thing portable openable",
}

# English: "singular plural".
EN_NOUNS: dict[str, str] = {
    "man": "man men",
    "woman": "woman women",
    "boy": "boy boys",
    "girl": "girl girls",
    "teacher": "teacher teachers",
    "doctor": "doctor doctors",
    "student": "student students",
    "farmer": "farmer farmers",
    "king": "king kings",
    "queen": "queen queens",
    "sister": "sister sisters",
    "brother": "brother brothers",
    "friend": "friend friends",
    "dog": "dog dogs",
    "cat": "cat cats",
    "horse": "horse horses",
    "bird": "bird birds",
    "cow": "cow cows",
    "mouse": "mouse mice",
    "elephant": "elephant elephants",
    "lion": "lion lions",
    "bear": "bear bears",
    "duck": "duck ducks",
    "monkey": "monkey monkeys",
    "rabbit": "rabbit rabbits",
    "apple": "apple apples",
    "cake": "cake cakes",
    "egg": "egg eggs",
    "orange": "orange oranges",
    "book": "book books",
    "letter": "letter letters",
    "ball": "ball balls",
    "car": "car cars",
    "flower": "flower flowers",
    "house": "house houses",
    "bicycle": "bicycle bicycles",
    "hat": "hat hats",
    "key": "key keys",
    "cup": "cup cups",
    "box": "box boxes",
}

# German: "gender nominative-sg oblique-sg nominative-pl dative-pl".
# The oblique singular (accusative = dative here) differs only for weak nouns: den Jungen.
DE_NOUNS: dict[str, str] = {
    "man": "m Mann Mann Männer Männern",
    "woman": "f Frau Frau Frauen Frauen",
    "boy": "m Junge Jungen Jungen Jungen",
    "girl": "n Mädchen Mädchen Mädchen Mädchen",
    "teacher": "m Lehrer Lehrer Lehrer Lehrern",
    "doctor": "m Arzt Arzt Ärzte Ärzten",
    "student": "m Student Studenten Studenten Studenten",
    "farmer": "m Bauer Bauern Bauern Bauern",
    "king": "m König König Könige Königen",
    "queen": "f Königin Königin Königinnen Königinnen",
    "sister": "f Schwester Schwester Schwestern Schwestern",
    "brother": "m Bruder Bruder Brüder Brüdern",
    "friend": "m Freund Freund Freunde Freunden",
    "dog": "m Hund Hund Hunde Hunden",
    "cat": "f Katze Katze Katzen Katzen",
    "horse": "n Pferd Pferd Pferde Pferden",
    "bird": "m Vogel Vogel Vögel Vögeln",
    "cow": "f Kuh Kuh Kühe Kühen",
    "mouse": "f Maus Maus Mäuse Mäusen",
    "elephant": "m Elefant Elefanten Elefanten Elefanten",
    "lion": "m Löwe Löwen Löwen Löwen",
    "bear": "m Bär Bären Bären Bären",
    "duck": "f Ente Ente Enten Enten",
    "monkey": "m Affe Affen Affen Affen",
    "rabbit": "n Kaninchen Kaninchen Kaninchen Kaninchen",
    "apple": "m Apfel Apfel Äpfel Äpfeln",
    "cake": "m Kuchen Kuchen Kuchen Kuchen",
    "egg": "n Ei Ei Eier Eiern",
    "orange": "f Orange Orange Orangen Orangen",
    "book": "n Buch Buch Bücher Büchern",
    "letter": "m Brief Brief Briefe Briefen",
    "ball": "m Ball Ball Bälle Bällen",
    "car": "n Auto Auto Autos Autos",
    "flower": "f Blume Blume Blumen Blumen",
    "house": "n Haus Haus Häuser Häusern",
    "bicycle": "n Fahrrad Fahrrad Fahrräder Fahrrädern",
    "hat": "m Hut Hut Hüte Hüten",
    "key": "m Schlüssel Schlüssel Schlüssel Schlüsseln",
    "cup": "f Tasse Tasse Tassen Tassen",
    "box": "f Kiste Kiste Kisten Kisten",
}

# French: "gender singular plural".
FR_NOUNS: dict[str, str] = {
    "man": "m homme hommes",
    "woman": "f femme femmes",
    "boy": "m garçon garçons",
    "girl": "f fille filles",
    "teacher": "m professeur professeurs",
    "doctor": "m médecin médecins",
    "student": "m étudiant étudiants",
    "farmer": "m fermier fermiers",
    "king": "m roi rois",
    "queen": "f reine reines",
    "sister": "f sœur sœurs",
    "brother": "m frère frères",
    "friend": "m ami amis",
    "dog": "m chien chiens",
    "cat": "m chat chats",
    "horse": "m cheval chevaux",
    "bird": "m oiseau oiseaux",
    "cow": "f vache vaches",
    "mouse": "f souris souris",
    "elephant": "m éléphant éléphants",
    "lion": "m lion lions",
    "bear": "m ours ours",
    "duck": "m canard canards",
    "monkey": "m singe singes",
    "rabbit": "m lapin lapins",
    "apple": "f pomme pommes",
    "cake": "m gâteau gâteaux",
    "egg": "m œuf œufs",
    "orange": "f orange oranges",
    "book": "m livre livres",
    "letter": "f lettre lettres",
    "ball": "m ballon ballons",
    "car": "f voiture voitures",
    "flower": "f fleur fleurs",
    "house": "f maison maisons",
    "bicycle": "m vélo vélos",
    "hat": "m chapeau chapeaux",
    "key": "f clé clés",
    "cup": "f tasse tasses",
    "box": "f boîte boîtes",
}
# Words starting with a mute h behave like vowel-initial words (l'homme, le vieil homme).
FR_MUTE_H: frozenset[str] = frozenset({"homme", "hommes"})

# Spanish: "gender singular plural".
ES_NOUNS: dict[str, str] = {
    "man": "m hombre hombres",
    "woman": "f mujer mujeres",
    "boy": "m niño niños",
    "girl": "f niña niñas",
    "teacher": "m profesor profesores",
    "doctor": "m médico médicos",
    "student": "m estudiante estudiantes",
    "farmer": "m granjero granjeros",
    "king": "m rey reyes",
    "queen": "f reina reinas",
    "sister": "f hermana hermanas",
    "brother": "m hermano hermanos",
    "friend": "m amigo amigos",
    "dog": "m perro perros",
    "cat": "m gato gatos",
    "horse": "m caballo caballos",
    "bird": "m pájaro pájaros",
    "cow": "f vaca vacas",
    "mouse": "m ratón ratones",
    "elephant": "m elefante elefantes",
    "lion": "m león leones",
    "bear": "m oso osos",
    "duck": "m pato patos",
    "monkey": "m mono monos",
    "rabbit": "m conejo conejos",
    "apple": "f manzana manzanas",
    "cake": "m pastel pasteles",
    "egg": "m huevo huevos",
    "orange": "f naranja naranjas",
    "book": "m libro libros",
    "letter": "f carta cartas",
    "ball": "f pelota pelotas",
    "car": "m coche coches",
    "flower": "f flor flores",
    "house": "f casa casas",
    "bicycle": "f bicicleta bicicletas",
    "hat": "m sombrero sombreros",
    "key": "f llave llaves",
    "cup": "f taza tazas",
    "box": "f caja cajas",
}

# Czech: "gender  nom gen dat acc ins (singular) / nom gen dat acc ins (plural)".
# Gender: m = masculine animate, i = masculine inanimate, f = feminine, n = neuter.
# Czech declension has many noun classes and stem changes (pes -> psa), so every form we
# need is written out rather than derived.
CS_NOUNS: dict[str, str] = {
    "man": "m muž muže muži muže mužem / muži mužů mužům muže muži",
    "woman": "f žena ženy ženě ženu ženou / ženy žen ženám ženy ženami",
    "boy": "m chlapec chlapce chlapci chlapce chlapcem / chlapci chlapců chlapcům chlapce chlapci",
    "girl": "f dívka dívky dívce dívku dívkou / dívky dívek dívkám dívky dívkami",
    "teacher": "m učitel učitele učiteli učitele učitelem / učitelé učitelů učitelům učitele učiteli",
    "doctor": "m lékař lékaře lékaři lékaře lékařem / lékaři lékařů lékařům lékaře lékaři",
    "student": "m student studenta studentovi studenta studentem / studenti studentů studentům studenty studenty",
    "farmer": "m farmář farmáře farmáři farmáře farmářem / farmáři farmářů farmářům farmáře farmáři",
    "king": "m král krále králi krále králem / králové králů králům krále králi",
    "queen": "f královna královny královně královnu královnou / královny královen královnám královny královnami",
    "sister": "f sestra sestry sestře sestru sestrou / sestry sester sestrám sestry sestrami",
    "brother": "m bratr bratra bratrovi bratra bratrem / bratři bratrů bratrům bratry bratry",
    "friend": "m přítel přítele příteli přítele přítelem / přátelé přátel přátelům přátele přáteli",
    "dog": "m pes psa psovi psa psem / psi psů psům psy psy",
    "cat": "f kočka kočky kočce kočku kočkou / kočky koček kočkám kočky kočkami",
    "horse": "m kůň koně koni koně koněm / koně koní koním koně koňmi",
    "bird": "m pták ptáka ptákovi ptáka ptákem / ptáci ptáků ptákům ptáky ptáky",
    "cow": "f kráva krávy krávě krávu krávou / krávy krav kravám krávy kravami",
    "mouse": "f myš myši myši myš myší / myši myší myším myši myšmi",
    "elephant": "m slon slona slonovi slona slonem / sloni slonů slonům slony slony",
    "lion": "m lev lva lvovi lva lvem / lvi lvů lvům lvy lvy",
    "bear": "m medvěd medvěda medvědovi medvěda medvědem / medvědi medvědů medvědům medvědy medvědy",
    "duck": "f kachna kachny kachně kachnu kachnou / kachny kachen kachnám kachny kachnami",
    "monkey": "f opice opice opici opici opicí / opice opic opicím opice opicemi",
    "rabbit": "m králík králíka králíkovi králíka králíkem / králíci králíků králíkům králíky králíky",
    "apple": "n jablko jablka jablku jablko jablkem / jablka jablek jablkům jablka jablky",
    "cake": "i dort dortu dortu dort dortem / dorty dortů dortům dorty dorty",
    "egg": "n vejce vejce vejci vejce vejcem / vejce vajec vejcím vejce vejci",
    "orange": "i pomeranč pomeranče pomeranči pomeranč pomerančem / pomeranče pomerančů pomerančům pomeranče pomeranči",
    "book": "f kniha knihy knize knihu knihou / knihy knih knihám knihy knihami",
    "letter": "i dopis dopisu dopisu dopis dopisem / dopisy dopisů dopisům dopisy dopisy",
    "ball": "i míč míče míči míč míčem / míče míčů míčům míče míči",
    "car": "n auto auta autu auto autem / auta aut autům auta auty",
    "flower": "f květina květiny květině květinu květinou / květiny květin květinám květiny květinami",
    "house": "i dům domu domu dům domem / domy domů domům domy domy",
    "bicycle": "n kolo kola kolu kolo kolem / kola kol kolům kola koly",
    "hat": "i klobouk klobouku klobouku klobouk kloboukem / klobouky klobouků kloboukům klobouky klobouky",
    "key": "i klíč klíče klíči klíč klíčem / klíče klíčů klíčům klíče klíči",
    "cup": "i hrnek hrnku hrnku hrnek hrnkem / hrnky hrnků hrnkům hrnky hrnky",
    "box": "f krabice krabice krabici krabici krabicí / krabice krabic krabicím krabice krabicemi",
}
CS_CASES: tuple[str, ...] = ("nom", "gen", "dat", "acc", "ins")

# --- adjectives -----------------------------------------------------------------------------

# Which nouns an adjective may describe, and its "group": a sentence never pairs two adjectives
# of one group ("the black dog is white").
ADJ_TAGS: dict[str, tuple[str, str]] = {
    "big": ("size", "person animal thing food"),
    "small": ("size", "person animal thing food"),
    "old": ("age", "adult animal thing"),
    "young": ("age", "person animal"),
    "new": ("age", "thing"),
    "beautiful": ("beauty", "animal thing"),
    "black": ("colour", "animal thing"),
    "white": ("colour", "animal thing"),
    "red": ("colour", "thing bird"),
    "green": ("colour", "thing bird"),
    "blue": ("colour", "thing bird"),
    "yellow": ("colour", "thing bird"),
    "grey": ("colour", "animal"),
    "brown": ("colour", "animal"),
    "fast": ("speed", "animal vehicle"),
    "tired": ("state", "person animal"),
    "hungry": ("state", "person animal"),
    "happy": ("state", "person animal"),
}

EN_ADJ: dict[str, str] = {a: a for a in ADJ_TAGS}

# German: the stem; endings are added by the declension tables below.
DE_ADJ: dict[str, str] = {
    "big": "groß",
    "small": "klein",
    "old": "alt",
    "young": "jung",
    "new": "neu",
    "beautiful": "schön",
    "black": "schwarz",
    "white": "weiß",
    "red": "rot",
    "green": "grün",
    "blue": "blau",
    "yellow": "gelb",
    "grey": "grau",
    "brown": "braun",
    "fast": "schnell",
    "tired": "müde",
    "hungry": "hungrig",
    "happy": "glücklich",
}

# French: "position masc-sg fem-sg masc-pl fem-pl [masc-sg before a vowel]".
# Most French adjectives follow the noun; a few common ones (BAGS) precede it.
FR_ADJ: dict[str, str] = {
    "big": "pre grand grande grands grandes",
    "small": "pre petit petite petits petites",
    "old": "pre vieux vieille vieux vieilles vieil",
    "young": "pre jeune jeune jeunes jeunes",
    "new": "pre nouveau nouvelle nouveaux nouvelles nouvel",
    "beautiful": "pre beau belle beaux belles bel",
    "black": "post noir noire noirs noires",
    "white": "post blanc blanche blancs blanches",
    "red": "post rouge rouge rouges rouges",
    "green": "post vert verte verts vertes",
    "blue": "post bleu bleue bleus bleues",
    "yellow": "post jaune jaune jaunes jaunes",
    "grey": "post gris grise gris grises",
    "brown": "post brun brune bruns brunes",
    "fast": "post rapide rapide rapides rapides",
    "tired": "post fatigué fatiguée fatigués fatiguées",
    "hungry": "post affamé affamée affamés affamées",
    "happy": "post heureux heureuse heureux heureuses",
}

# Spanish: "masc-sg fem-sg masc-pl fem-pl"; all of these follow the noun.
ES_ADJ: dict[str, str] = {
    "big": "grande grande grandes grandes",
    "small": "pequeño pequeña pequeños pequeñas",
    "old": "viejo vieja viejos viejas",
    "young": "joven joven jóvenes jóvenes",
    "new": "nuevo nueva nuevos nuevas",
    "beautiful": "bonito bonita bonitos bonitas",
    "black": "negro negra negros negras",
    "white": "blanco blanca blancos blancas",
    "red": "rojo roja rojos rojas",
    "green": "verde verde verdes verdes",
    "blue": "azul azul azules azules",
    "yellow": "amarillo amarilla amarillos amarillas",
    "grey": "gris gris grises grises",
    "brown": "marrón marrón marrones marrones",
    "fast": "rápido rápida rápidos rápidas",
    "tired": "cansado cansada cansados cansadas",
    "hungry": "hambriento hambrienta hambrientos hambrientas",
    "happy": "feliz feliz felices felices",
}
# Spanish uses "estar" for temporary states and "ser" for lasting properties.
ES_STATE_ADJ: frozenset[str] = frozenset({"tired", "hungry", "happy"})

# Czech: "masculine nominative singular, masculine animate nominative plural". All are hard
# adjectives (-ý); the other endings are regular, but the animate plural changes the stem
# consonant (velký -> velcí, modrý -> modří), so it is stored.
CS_ADJ: dict[str, str] = {
    "big": "velký velcí",
    "small": "malý malí",
    "old": "starý staří",
    "young": "mladý mladí",
    "new": "nový noví",
    "beautiful": "krásný krásní",
    "black": "černý černí",
    "white": "bílý bílí",
    "red": "červený červení",
    "green": "zelený zelení",
    "blue": "modrý modří",
    "yellow": "žlutý žlutí",
    "grey": "šedý šedí",
    "brown": "hnědý hnědí",
    "fast": "rychlý rychlí",
    "tired": "unavený unavení",
    "hungry": "hladový hladoví",
    "happy": "šťastný šťastní",
}

# --- places: whole phrases, "location | direction" ------------------------------------------
# Stored as phrases because prepositions differ idiomatically (at school / in der Schule /
# à l'école / ve škole; to the beach / an den Strand / na pláž).
PLACE_TAGS: dict[str, str] = {
    "park": "person animal",
    "garden": "person animal",
    "forest": "person animal",
    "river": "person animal",
    "beach": "person animal",
    "zoo": "person animal",
    "school": "person",
    "city": "person",
    "kitchen": "person",
    "market": "person",
    "home": "person",
}
EN_PLACES: dict[str, str] = {
    "park": "in the park | to the park",
    "garden": "in the garden | to the garden",
    "forest": "in the forest | to the forest",
    "river": "by the river | to the river",
    "beach": "on the beach | to the beach",
    "zoo": "at the zoo | to the zoo",
    "school": "at school | to school",
    "city": "in the city | to the city",
    "kitchen": "in the kitchen | to the kitchen",
    "market": "at the market | to the market",
    "home": "at home | home",
}
DE_PLACES: dict[str, str] = {
    "park": "im Park | in den Park",
    "garden": "im Garten | in den Garten",
    "forest": "im Wald | in den Wald",
    "river": "am Fluss | zum Fluss",
    "beach": "am Strand | an den Strand",
    "zoo": "im Zoo | in den Zoo",
    "school": "in der Schule | in die Schule",
    "city": "in der Stadt | in die Stadt",
    "kitchen": "in der Küche | in die Küche",
    "market": "auf dem Markt | auf den Markt",
    "home": "zu Hause | nach Hause",
}
FR_PLACES: dict[str, str] = {
    "park": "dans le parc | au parc",
    "garden": "dans le jardin | au jardin",
    "forest": "dans la forêt | dans la forêt",
    "river": "au bord de la rivière | à la rivière",
    "beach": "sur la plage | à la plage",
    "zoo": "au zoo | au zoo",
    "school": "à l'école | à l'école",
    "city": "dans la ville | en ville",
    "kitchen": "dans la cuisine | dans la cuisine",
    "market": "au marché | au marché",
    "home": "à la maison | à la maison",
}
ES_PLACES: dict[str, str] = {
    "park": "en el parque | al parque",
    "garden": "en el jardín | al jardín",
    "forest": "en el bosque | al bosque",
    "river": "junto al río | al río",
    "beach": "en la playa | a la playa",
    "zoo": "en el zoo | al zoo",
    "school": "en la escuela | a la escuela",
    "city": "en la ciudad | a la ciudad",
    "kitchen": "en la cocina | a la cocina",
    "market": "en el mercado | al mercado",
    "home": "en casa | a casa",
}
CS_PLACES: dict[str, str] = {
    "park": "v parku | do parku",
    "garden": "na zahradě | na zahradu",
    "forest": "v lese | do lesa",
    "river": "u řeky | k řece",
    "beach": "na pláži | na pláž",
    "zoo": "v zoo | do zoo",
    "school": "ve škole | do školy",
    "city": "ve městě | do města",
    "kitchen": "v kuchyni | do kuchyně",
    "market": "na trhu | na trh",
    "home": "doma | domů",
}

# --- verbs ----------------------------------------------------------------------------------


class Verb(NamedTuple):
    """How a verb may be used. Tags are space-separated; a noun fits if it shares one."""

    frame: str  # "loc": + place, "dir": + destination, "obj": + object
    subjects: str  # tags of possible subjects
    objects: str = ""  # tags of possible objects ("obj" verbs only)
    object_dets: str = "the the_pl a num"  # which determiners the object may take
    with_ok: bool = False  # may take a companion: "with the dog"
    place_ok: bool = False  # an "obj" verb may add a location: "... in the park"


VERBS: dict[str, Verb] = {
    "sleep": Verb("loc", "person animal"),
    "play": Verb("loc", "person animal", with_ok=True),
    "sing": Verb("loc", "person bird", with_ok=True),
    "wait": Verb("loc", "person animal", with_ok=True),
    "work": Verb("loc", "person", with_ok=True),
    "go": Verb("dir", "person animal", with_ok=True),
    "run": Verb("dir", "person animal", with_ok=True),
    "come": Verb("dir", "person animal", with_ok=True),
    "fly": Verb("dir", "bird"),
    "see": Verb("obj", "person animal", "person animal thing food", place_ok=True),
    "eat": Verb("obj", "person animal", "food", place_ok=True),
    "read": Verb("obj", "person", "readable", place_ok=True),
    "write": Verb("obj", "person", "readable", place_ok=True),
    "buy": Verb("obj", "person", "thing food", place_ok=True),
    "carry": Verb("obj", "person", "portable", place_ok=True),
    "have": Verb("obj", "person", "animal thing", object_dets="a num"),
    "help": Verb("obj", "person", "person animal", place_ok=True),
    "wash": Verb("obj", "person", "animal washable", place_ok=True),
    "throw": Verb("obj", "person", "throwable", place_ok=True),
    "open": Verb("obj", "person", "openable", place_ok=True),
    "look for": Verb("obj", "person animal", "person animal thing food", place_ok=True),
    "love": Verb("obj", "person", "person animal", object_dets="the the_pl"),
    "talk": Verb("obj", "person", "person animal", object_dets="the the_pl a", place_ok=True),
    "afraid": Verb("obj", "person animal", "person animal"),
}

# Verb forms, in the person order: I, you (singular), he/she/it, we, they.
# English lists only "base, third-person" when the other forms equal the base.
EN_VERBS: dict[str, str] = {
    "sleep": "sleep, sleeps",
    "play": "play, plays",
    "sing": "sing, sings",
    "wait": "wait, waits",
    "work": "work, works",
    "go": "go, goes",
    "run": "run, runs",
    "come": "come, comes",
    "fly": "fly, flies",
    "see": "see, sees",
    "eat": "eat, eats",
    "read": "read, reads",
    "write": "write, writes",
    "buy": "buy, buys",
    "carry": "carry, carries",
    "have": "have, has",
    "help": "help, helps",
    "wash": "wash, washes",
    "throw": "throw, throws",
    "open": "open, opens",
    "look for": "look for, looks for",
    "love": "love, loves",
    "talk": "talk to, talks to",
    "afraid": "am afraid of, are afraid of, is afraid of, are afraid of, are afraid of",
}
DE_VERBS: dict[str, str] = {
    "sleep": "schlafe, schläfst, schläft, schlafen, schlafen",
    "play": "spiele, spielst, spielt, spielen, spielen",
    "sing": "singe, singst, singt, singen, singen",
    "wait": "warte, wartest, wartet, warten, warten",
    "work": "arbeite, arbeitest, arbeitet, arbeiten, arbeiten",
    "go": "gehe, gehst, geht, gehen, gehen",
    "run": "laufe, läufst, läuft, laufen, laufen",
    "come": "komme, kommst, kommt, kommen, kommen",
    "fly": "fliege, fliegst, fliegt, fliegen, fliegen",
    "see": "sehe, siehst, sieht, sehen, sehen",
    "eat": "esse, isst, isst, essen, essen",
    "read": "lese, liest, liest, lesen, lesen",
    "write": "schreibe, schreibst, schreibt, schreiben, schreiben",
    "buy": "kaufe, kaufst, kauft, kaufen, kaufen",
    "carry": "trage, trägst, trägt, tragen, tragen",
    "have": "habe, hast, hat, haben, haben",
    "help": "helfe, hilfst, hilft, helfen, helfen",
    "wash": "wasche, wäschst, wäscht, waschen, waschen",
    "throw": "werfe, wirfst, wirft, werfen, werfen",
    "open": "öffne, öffnest, öffnet, öffnen, öffnen",
    "look for": "suche, suchst, sucht, suchen, suchen",
    "love": "liebe, liebst, liebt, lieben, lieben",
    "talk": "spreche, sprichst, spricht, sprechen, sprechen",
    "afraid": "habe Angst, hast Angst, hat Angst, haben Angst, haben Angst",
}
# German says "fressen", not "essen", when an animal eats.
DE_ANIMAL_VERBS: dict[str, str] = {"eat": "fresse, frisst, frisst, fressen, fressen"}

FR_VERBS: dict[str, str] = {
    "sleep": "dors, dors, dort, dormons, dorment",
    "play": "joue, joues, joue, jouons, jouent",
    "sing": "chante, chantes, chante, chantons, chantent",
    "wait": "attends, attends, attend, attendons, attendent",
    "work": "travaille, travailles, travaille, travaillons, travaillent",
    "go": "vais, vas, va, allons, vont",
    "run": "cours, cours, court, courons, courent",
    "come": "viens, viens, vient, venons, viennent",
    "fly": "vole, voles, vole, volons, volent",
    "see": "vois, vois, voit, voyons, voient",
    "eat": "mange, manges, mange, mangeons, mangent",
    "read": "lis, lis, lit, lisons, lisent",
    "write": "écris, écris, écrit, écrivons, écrivent",
    "buy": "achète, achètes, achète, achetons, achètent",
    "carry": "porte, portes, porte, portons, portent",
    "have": "ai, as, a, avons, ont",
    "help": "aide, aides, aide, aidons, aident",
    "wash": "lave, laves, lave, lavons, lavent",
    "throw": "lance, lances, lance, lançons, lancent",
    "open": "ouvre, ouvres, ouvre, ouvrons, ouvrent",
    "look for": "cherche, cherches, cherche, cherchons, cherchent",
    "love": "aime, aimes, aime, aimons, aiment",
    "talk": "parle, parles, parle, parlons, parlent",
    "afraid": "ai peur, as peur, a peur, avons peur, ont peur",
}
ES_VERBS: dict[str, str] = {
    "sleep": "duermo, duermes, duerme, dormimos, duermen",
    "play": "juego, juegas, juega, jugamos, juegan",
    "sing": "canto, cantas, canta, cantamos, cantan",
    "wait": "espero, esperas, espera, esperamos, esperan",
    "work": "trabajo, trabajas, trabaja, trabajamos, trabajan",
    "go": "voy, vas, va, vamos, van",
    "run": "corro, corres, corre, corremos, corren",
    "come": "vengo, vienes, viene, venimos, vienen",
    "fly": "vuelo, vuelas, vuela, volamos, vuelan",
    "see": "veo, ves, ve, vemos, ven",
    "eat": "como, comes, come, comemos, comen",
    "read": "leo, lees, lee, leemos, leen",
    "write": "escribo, escribes, escribe, escribimos, escriben",
    "buy": "compro, compras, compra, compramos, compran",
    "carry": "llevo, llevas, lleva, llevamos, llevan",
    "have": "tengo, tienes, tiene, tenemos, tienen",
    "help": "ayudo, ayudas, ayuda, ayudamos, ayudan",
    "wash": "lavo, lavas, lava, lavamos, lavan",
    "throw": "lanzo, lanzas, lanza, lanzamos, lanzan",
    "open": "abro, abres, abre, abrimos, abren",
    "look for": "busco, buscas, busca, buscamos, buscan",
    "love": "quiero, quieres, quiere, queremos, quieren",
    "talk": "hablo, hablas, habla, hablamos, hablan",
    "afraid": "tengo miedo, tienes miedo, tiene miedo, tenemos miedo, tienen miedo",
}
CS_VERBS: dict[str, str] = {
    "sleep": "spím, spíš, spí, spíme, spí",
    "play": "hraji, hraješ, hraje, hrajeme, hrají",
    "sing": "zpívám, zpíváš, zpívá, zpíváme, zpívají",
    "wait": "čekám, čekáš, čeká, čekáme, čekají",
    "work": "pracuji, pracuješ, pracuje, pracujeme, pracují",
    "go": "jdu, jdeš, jde, jdeme, jdou",
    "run": "běžím, běžíš, běží, běžíme, běží",
    "come": "přicházím, přicházíš, přichází, přicházíme, přicházejí",
    "fly": "letím, letíš, letí, letíme, letí",
    "see": "vidím, vidíš, vidí, vidíme, vidí",
    "eat": "jím, jíš, jí, jíme, jedí",
    "read": "čtu, čteš, čte, čteme, čtou",
    "write": "píši, píšeš, píše, píšeme, píší",
    "buy": "kupuji, kupuješ, kupuje, kupujeme, kupují",
    "carry": "nesu, neseš, nese, neseme, nesou",
    "have": "mám, máš, má, máme, mají",
    "help": "pomáhám, pomáháš, pomáhá, pomáháme, pomáhají",
    "wash": "myji, myješ, myje, myjeme, myjí",
    "throw": "házím, házíš, hází, házíme, házejí",
    "open": "otevírám, otevíráš, otevírá, otevíráme, otevírají",
    "look for": "hledám, hledáš, hledá, hledáme, hledají",
    "love": "miluji, miluješ, miluje, milujeme, milují",
    "talk": "mluvím, mluvíš, mluví, mluvíme, mluví",
    "afraid": "bojím, bojíš, bojí, bojíme, bojí",
}

# How each language marks the object of a verb (default: plain accusative / direct object).
DE_OBJECT: dict[str, tuple[str, str]] = {  # verb -> (preposition, case)
    "help": ("", "dat"),
    "talk": ("mit", "dat"),
    "afraid": ("vor", "dat"),
}
FR_OBJECT: dict[str, str] = {"talk": "à", "afraid": "de"}  # verb -> preposition
ES_OBJECT: dict[str, str] = {"talk": "con", "afraid": "de", "help": "a", "love": "a"}
ES_NO_PERSONAL_A: frozenset[str] = frozenset({"have"})  # "tener" never takes personal "a"
CS_OBJECT: dict[str, tuple[str, str]] = {  # verb -> (preposition, case)
    "help": ("", "dat"),
    "talk": ("s", "ins"),
    "afraid": ("", "gen"),
}
# Czech reflexive clitics: "hrát si" (to play), "bát se" (to be afraid).
CS_CLITIC: dict[str, str] = {"play": "si", "afraid": "se"}

# --- small closed classes -------------------------------------------------------------------

# Subject pronouns by person index (0 = I, 1 = you, 3 = we). Spanish and Czech drop them:
# the verb ending already says who the subject is.
PRONOUN_PERSONS: tuple[int, ...] = (0, 1, 3)
EN_PRONOUNS: dict[int, str] = {0: "I", 1: "you", 3: "we"}
DE_PRONOUNS: dict[int, str] = {0: "ich", 1: "du", 3: "wir"}
FR_PRONOUNS: dict[int, str] = {0: "je", 1: "tu", 3: "nous"}

EN_NUMBERS: dict[int, str] = {2: "two", 3: "three", 4: "four", 5: "five"}
DE_NUMBERS: dict[int, str] = {2: "zwei", 3: "drei", 4: "vier", 5: "fünf"}
FR_NUMBERS: dict[int, str] = {2: "deux", 3: "trois", 4: "quatre", 5: "cinq"}
ES_NUMBERS: dict[int, str] = {2: "dos", 3: "tres", 4: "cuatro", 5: "cinco"}
# Czech numerals decline; "dva/dvě" also shows gender (masculine / feminine+neuter).
CS_NUMBERS: dict[int, dict[str, str]] = {
    2: {"nom": "dva/dvě", "acc": "dva/dvě", "gen": "dvou", "dat": "dvěma", "ins": "dvěma"},
    3: {"nom": "tři", "acc": "tři", "gen": "tří", "dat": "třem", "ins": "třemi"},
    4: {"nom": "čtyři", "acc": "čtyři", "gen": "čtyř", "dat": "čtyřem", "ins": "čtyřmi"},
    5: {"nom": "pět", "acc": "pět", "gen": "pěti", "dat": "pěti", "ins": "pěti"},
}

# Copula "to be" (3rd person singular, plural) for "The dog is hungry."
EN_BE: tuple[str, str] = ("is", "are")
DE_BE: tuple[str, str] = ("ist", "sind")
FR_BE: tuple[str, str] = ("est", "sont")
ES_SER: tuple[str, str] = ("es", "son")
ES_ESTAR: tuple[str, str] = ("está", "están")
CS_BE: tuple[str, str] = ("je", "jsou")

# ============================================================================================
# 2. Meanings: what a sentence says, independent of language.
# ============================================================================================

THIRD_SG, THIRD_PL = 2, 4  # person indices of a noun subject


class NP(NamedTuple):
    """A noun phrase: "the dog", "a small cat", "three red balls"."""

    noun: str
    det: str  # "the" | "a" | "num"
    plural: bool
    count: int = 0  # 2..5 when det == "num"
    adj: str | None = None


class Clause(NamedTuple):
    """One sentence meaning. `subject` is an NP or a pronoun's person index (0, 1, 3)."""

    frame: str  # "loc" | "dir" | "obj" | "obj_loc" | "with" | "pred"
    subject: NP | int
    verb: str = ""
    obj: NP | None = None
    companion: NP | None = None
    place: str = ""
    pred_adj: str = ""


def _person(subject: NP | int) -> int:
    if isinstance(subject, int):
        return subject
    return THIRD_PL if subject.plural else THIRD_SG


def _forms(table: dict[str, str], key: str) -> list[str]:
    """Verb forms in person order; English "see, sees" expands to all five persons."""
    forms = [f.strip() for f in table[key].split(",")]
    if len(forms) == 2:
        base, third = forms
        forms = [base, base, third, base, base]
    return forms


def _place(table: dict[str, str], c: Clause) -> str:
    """The clause's place phrase: a destination after motion verbs, else a location."""
    if not c.place:
        return ""
    location, direction = (p.strip() for p in table[c.place].split("|"))
    return direction if VERBS[c.verb].frame == "dir" else location


def _sentence(parts: list[str]) -> str:
    """Join the non-empty parts, capitalise the first letter, add the full stop."""
    text = " ".join(p for p in parts if p)
    return text[0].upper() + text[1:] + "."


# ============================================================================================
# 3. Realisation: one small set of functions per language.
# ============================================================================================

# --- English --------------------------------------------------------------------------------


def _en_np(np: NP) -> str:
    singular, plural = EN_NOUNS[np.noun].split()
    words = ([EN_ADJ[np.adj]] if np.adj else []) + [plural if np.plural else singular]
    if np.det == "num":
        det = EN_NUMBERS[np.count]
    elif np.det == "a":
        det = "an" if words[0][0] in "aeio" else "a"  # an apple, an old dog, a young cat
    else:
        det = "the"
    return " ".join([det, *words])


def _realize_en(c: Clause) -> str:
    subject = EN_PRONOUNS[c.subject] if isinstance(c.subject, int) else _en_np(c.subject)
    person = _person(c.subject)
    if c.frame == "pred":
        return _sentence([subject, EN_BE[person == THIRD_PL], EN_ADJ[c.pred_adj]])
    parts = [subject, _forms(EN_VERBS, c.verb)[person]]
    if c.obj:
        parts.append(_en_np(c.obj))
    place = _place(EN_PLACES, c)
    if c.companion and VERBS[c.verb].frame == "dir":
        parts += [place, "with " + _en_np(c.companion)]  # goes to the park with the dog
    else:
        parts += ["with " + _en_np(c.companion) if c.companion else "", place]
    return _sentence(parts)


# --- German ---------------------------------------------------------------------------------

DE_ARTICLES: dict[str, dict[str, dict[str, str]]] = {
    "the": {
        "nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
        "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
        "dat": {"m": "dem", "f": "der", "n": "dem", "pl": "den"},
    },
    "a": {
        "nom": {"m": "ein", "f": "eine", "n": "ein"},
        "acc": {"m": "einen", "f": "eine", "n": "ein"},
        "dat": {"m": "einem", "f": "einer", "n": "einem"},
    },
}
# Adjective endings depend on what precedes them: weak after "der", mixed after "ein",
# strong after a bare number ("zwei große Hunde").
DE_ADJ_ENDINGS: dict[str, dict[str, dict[str, str]]] = {
    "the": {
        "nom": {"m": "e", "f": "e", "n": "e", "pl": "en"},
        "acc": {"m": "en", "f": "e", "n": "e", "pl": "en"},
        "dat": {"m": "en", "f": "en", "n": "en", "pl": "en"},
    },
    "a": {
        "nom": {"m": "er", "f": "e", "n": "es"},
        "acc": {"m": "en", "f": "e", "n": "es"},
        "dat": {"m": "en", "f": "en", "n": "en"},
    },
    "num": {"nom": {"pl": "e"}, "acc": {"pl": "e"}, "dat": {"pl": "en"}},
}


def _de_np(np: NP, case: str) -> str:
    gender, nom_sg, obl_sg, nom_pl, dat_pl = DE_NOUNS[np.noun].split()
    if np.plural:
        noun = dat_pl if case == "dat" else nom_pl
    else:
        noun = nom_sg if case == "nom" else obl_sg
    slot = "pl" if np.plural else gender
    words = [DE_NUMBERS[np.count] if np.det == "num" else DE_ARTICLES[np.det][case][slot]]
    if np.adj:
        stem, ending = DE_ADJ[np.adj], DE_ADJ_ENDINGS[np.det][case][slot]
        words.append(stem + ending[1:] if stem.endswith("e") else stem + ending)  # müde+e
    return " ".join([*words, noun])


def _realize_de(c: Clause) -> str:
    subject = DE_PRONOUNS[c.subject] if isinstance(c.subject, int) else _de_np(c.subject, "nom")
    person = _person(c.subject)
    if c.frame == "pred":
        return _sentence([subject, DE_BE[person == THIRD_PL], DE_ADJ[c.pred_adj]])
    is_animal = isinstance(c.subject, NP) and "animal" in NOUN_TAGS[c.subject.noun]
    table = DE_ANIMAL_VERBS if is_animal and c.verb in DE_ANIMAL_VERBS else DE_VERBS
    parts = [subject, _forms(table, c.verb)[person]]
    if c.obj:
        prep, case = DE_OBJECT.get(c.verb, ("", "acc"))
        parts += [prep, _de_np(c.obj, case)]
    if c.companion:
        parts.append("mit " + _de_np(c.companion, "dat"))  # "mit" always takes the dative
    parts.append(_place(DE_PLACES, c))
    return _sentence(parts)


# --- French ---------------------------------------------------------------------------------

FR_CONTRACTIONS: dict[tuple[str, str], str] = {
    ("à", "le"): "au",
    ("à", "les"): "aux",
    ("de", "le"): "du",
    ("de", "les"): "des",
}


def _fr_vowel(word: str) -> bool:
    """Does the (first) word start with a vowel sound, so that le/la elide to l'?"""
    return word[0] in "aeiouéèêœ" or word.split()[0] in FR_MUTE_H


def _fr_np(np: NP, prep: str = "") -> str:
    gender, singular, plural = FR_NOUNS[np.noun].split()
    noun = plural if np.plural else singular
    words = [noun]
    if np.adj:
        position, *forms = FR_ADJ[np.adj].split()
        index = (2 if np.plural else 0) + (gender == "f")
        form = forms[index]
        if position == "pre":
            if index == 0 and len(forms) == 5 and _fr_vowel(noun):
                form = forms[4]  # le vieil homme, un bel oiseau
            words.insert(0, form)
        else:
            words.append(form)
    rest = " ".join(words)
    if np.det == "num":
        det = FR_NUMBERS[np.count]
    elif np.det == "a":
        det = "une" if gender == "f" else "un"
    elif np.plural:
        det = "les"
    elif _fr_vowel(rest):
        det = "l'"  # elision: l'oiseau, l'homme (but le petit oiseau)
    else:
        det = "la" if gender == "f" else "le"
    if prep:
        if (prep, det) in FR_CONTRACTIONS:
            det = FR_CONTRACTIONS[prep, det]  # au chien, du chien, aux chiens
        elif prep == "de" and _fr_vowel(det):
            det = "d'" + det  # d'un chien
        else:
            det = f"{prep} {det}"  # à la vache, de l'oiseau, de deux chiens
    return det + rest if det.endswith("'") else f"{det} {rest}"


def _realize_fr(c: Clause) -> str:
    person = _person(c.subject)
    if c.frame == "pred":
        np = c.subject
        assert isinstance(np, NP)
        gender = FR_NOUNS[np.noun].split()[0]
        _, *forms = FR_ADJ[c.pred_adj].split()
        adj = forms[(2 if np.plural else 0) + (gender == "f")]
        return _sentence([_fr_np(np), FR_BE[np.plural], adj])
    verb = _forms(FR_VERBS, c.verb)[person]
    if isinstance(c.subject, int):
        pronoun = FR_PRONOUNS[c.subject]
        head = "j'" + verb if pronoun == "je" and _fr_vowel(verb) else f"{pronoun} {verb}"
    else:
        head = f"{_fr_np(c.subject)} {verb}"
    parts = [head]
    if c.obj:
        parts.append(_fr_np(c.obj, FR_OBJECT.get(c.verb, "")))
    place = _place(FR_PLACES, c)
    companion = "avec " + _fr_np(c.companion) if c.companion else ""
    if VERBS[c.verb].frame == "dir":
        parts += [place, companion]  # va au parc avec le chien
    else:
        parts += [companion, place]  # joue avec le chien dans le jardin
    return _sentence(parts)


# --- Spanish --------------------------------------------------------------------------------


def _es_np(np: NP, prep: str = "") -> str:
    gender, singular, plural = ES_NOUNS[np.noun].split()
    index = (2 if np.plural else 0) + (gender == "f")
    words = [plural if np.plural else singular]
    if np.adj:
        words.append(ES_ADJ[np.adj].split()[index])  # adjectives follow the noun
    if np.det == "num":
        det = ES_NUMBERS[np.count]
    elif np.det == "a":
        det = "una" if gender == "f" else "un"
    else:
        det = ("el", "la", "los", "las")[index]
    if prep in ("a", "de") and det == "el":
        det = prep + "l"  # a + el = al, de + el = del
    elif prep:
        det = f"{prep} {det}"
    return " ".join([det, *words])


def _es_object_prep(verb: str, np: NP) -> str:
    """Preposition before a Spanish object, including the "personal a" for people
    (veo a la niña) and for definite animals (veo al perro, but veo un perro)."""
    if verb in ES_OBJECT:
        return ES_OBJECT[verb]
    tags = NOUN_TAGS[np.noun]
    if verb in ES_NO_PERSONAL_A:
        return ""
    if "person" in tags or ("animal" in tags and np.det == "the"):
        return "a"
    return ""


def _realize_es(c: Clause) -> str:
    person = _person(c.subject)
    subject = "" if isinstance(c.subject, int) else _es_np(c.subject)  # pro-drop
    if c.frame == "pred":
        np = c.subject
        assert isinstance(np, NP)
        gender = ES_NOUNS[np.noun].split()[0]
        adj = ES_ADJ[c.pred_adj].split()[(2 if np.plural else 0) + (gender == "f")]
        copula = ES_ESTAR if c.pred_adj in ES_STATE_ADJ else ES_SER
        return _sentence([subject, copula[np.plural], adj])
    parts = [subject, _forms(ES_VERBS, c.verb)[person]]
    if c.obj:
        parts.append(_es_np(c.obj, _es_object_prep(c.verb, c.obj)))
    place = _place(ES_PLACES, c)
    companion = "con " + _es_np(c.companion) if c.companion else ""
    if VERBS[c.verb].frame == "dir":
        parts += [place, companion]
    else:
        parts += [companion, place]
    return _sentence(parts)


# --- Czech ----------------------------------------------------------------------------------

# Hard-adjective endings (stem = lemma without -ý) by case and gender; "m" = masculine
# animate, "i" = masculine inanimate. The animate nominative plural comes from CS_ADJ.
CS_ADJ_SG: dict[str, dict[str, str]] = {
    "nom": {"m": "ý", "i": "ý", "f": "á", "n": "é"},
    "gen": {"m": "ého", "i": "ého", "f": "é", "n": "ého"},
    "dat": {"m": "ému", "i": "ému", "f": "é", "n": "ému"},
    "acc": {"m": "ého", "i": "ý", "f": "ou", "n": "é"},
    "ins": {"m": "ým", "i": "ým", "f": "ou", "n": "ým"},
}
CS_ADJ_PL: dict[str, dict[str, str]] = {
    "nom": {"i": "é", "f": "é", "n": "á"},
    "gen": {"m": "ých", "i": "ých", "f": "ých", "n": "ých"},
    "dat": {"m": "ým", "i": "ým", "f": "ým", "n": "ým"},
    "acc": {"m": "é", "i": "é", "f": "é", "n": "á"},
    "ins": {"m": "ými", "i": "ými", "f": "ými", "n": "ými"},
}


def _cs_noun(key: str) -> tuple[str, dict[str, str], dict[str, str]]:
    gender, forms = CS_NOUNS[key].split(maxsplit=1)
    singular, plural = forms.split("/")
    return gender, dict(zip(CS_CASES, singular.split())), dict(zip(CS_CASES, plural.split()))


def _cs_adj(adj: str, case: str, gender: str, plural: bool) -> str:
    lemma, animate_plural = CS_ADJ[adj].split()
    if plural and case == "nom" and gender == "m":
        return animate_plural  # velcí psi
    endings = CS_ADJ_PL if plural else CS_ADJ_SG
    return lemma[:-1] + endings[case][gender]


def _cs_np(np: NP, case: str) -> str:
    gender, singular, plural = _cs_noun(np.noun)
    words = []
    form_case = case
    if np.det == "num":
        numeral = CS_NUMBERS[np.count][case]
        if "/" in numeral:
            masculine, other = numeral.split("/")
            numeral = masculine if gender in "mi" else other
        words.append(numeral)
        if np.count == 5 and case in ("nom", "acc"):
            form_case = "gen"  # pět psů: 5 and above take the genitive plural
    if np.adj:
        words.append(_cs_adj(np.adj, form_case, gender, np.plural))
    words.append((plural if np.plural else singular)[form_case])
    return " ".join(words)  # Czech has no articles: "the dog" and "a dog" are both "pes"


def _cs_with(phrase: str) -> str:
    """The preposition "s" (with) becomes "se" before s, z, š, ž and before the clusters
    ps-, lv- (se psem, se lvem, se sestrou, but s kočkou)."""
    first = phrase.split()[0]
    vocalised = first[0] in "szšž" or first.startswith(("ps", "lv"))
    return ("se " if vocalised else "s ") + phrase


def _realize_cs(c: Clause) -> str:
    person = _person(c.subject)
    if isinstance(c.subject, NP) and c.subject.count == 5:
        person = THIRD_SG  # "pět psů běží": 5+ takes a singular verb
    subject = "" if isinstance(c.subject, int) else _cs_np(c.subject, "nom")  # pro-drop
    if c.frame == "pred":
        np = c.subject
        assert isinstance(np, NP)
        gender = CS_NOUNS[np.noun].split()[0]
        adj = _cs_adj(c.pred_adj, "nom", gender, np.plural)
        return _sentence([subject, CS_BE[np.plural], adj])
    verb = _forms(CS_VERBS, c.verb)[person]
    clitic = CS_CLITIC.get(c.verb, "")
    # Clitics (si, se) sit in second position: "Pes si hraje", but "Hraji si".
    parts = [subject, clitic, verb] if subject else [verb, clitic]
    if c.obj:
        prep, case = CS_OBJECT.get(c.verb, ("", "acc"))
        phrase = _cs_np(c.obj, case)
        parts.append(_cs_with(phrase) if prep == "s" else phrase)
    if c.companion:
        parts.append(_cs_with(_cs_np(c.companion, "ins")))
    parts.append(_place(CS_PLACES, c))
    return _sentence(parts)


REALIZERS = {
    "en": _realize_en,
    "de": _realize_de,
    "fr": _realize_fr,
    "cs": _realize_cs,
    "es": _realize_es,
}


def realize(clause: Clause) -> dict[str, str]:
    """The sentence for `clause` in every built-in language."""
    return {lang: REALIZERS[lang](clause) for lang in BUILTIN_LANGUAGES}


# ============================================================================================
# 4. Sampling meanings.
# ============================================================================================

# (determiner kind, det, plural, count, weight). "the" singular is most common so that the
# pattern is easy to learn; numbers make plural agreement visible.
DET_CHOICES: tuple[tuple[str, str, bool, int, float], ...] = (
    ("the", "the", False, 0, 4.0),
    ("the_pl", "the", True, 0, 2.0),
    ("a", "a", False, 0, 1.5),
    ("num", "num", True, 2, 0.8),
    ("num", "num", True, 3, 0.6),
    ("num", "num", True, 4, 0.5),
    ("num", "num", True, 5, 0.6),
)
FRAME_WEIGHTS: dict[str, float] = {
    "loc": 0.17,
    "dir": 0.14,
    "obj": 0.27,
    "obj_loc": 0.15,
    "with": 0.14,
    "pred": 0.13,
}
FRAMES, FRAME_CUM_WEIGHTS = list(FRAME_WEIGHTS), list(accumulate(FRAME_WEIGHTS.values()))
ADJ_PROBABILITY = 0.35
PRONOUN_PROBABILITY = 0.15


@cache
def _fits(tags: str, allowed: str) -> bool:
    return not set(tags.split()).isdisjoint(allowed.split())


# The candidate lists below depend only on their (string) arguments, so they are cached:
# this keeps generation fast without hiding the selection logic.
@cache
def _nouns_fitting(tags: str, exclude: str) -> tuple[str, ...]:
    return tuple(n for n, t in NOUN_TAGS.items() if _fits(t, tags) and n != exclude)


@cache
def _adjs_fitting(noun: str, avoid_group: str) -> tuple[str, ...]:
    return tuple(a for a, (group, tags) in ADJ_TAGS.items() if group != avoid_group and _fits(NOUN_TAGS[noun], tags))


@cache
def _dets_allowed(dets: str) -> tuple[tuple[tuple[str, str, bool, int, float], ...], list[float]]:
    choices = tuple(d for d in DET_CHOICES if d[0] in dets.split())
    return choices, list(accumulate(d[4] for d in choices))


def _sample_adj(rng: random.Random, noun: str, avoid_group: str = "") -> str | None:
    options = _adjs_fitting(noun, avoid_group)
    return rng.choice(options) if options else None


def _sample_np(
    rng: random.Random, tags: str, dets: str = "the the_pl a num", exclude: str = "", adj_probability: float = ADJ_PROBABILITY
) -> NP:
    noun = rng.choice(_nouns_fitting(tags, exclude))
    choices, cum_weights = _dets_allowed(dets)
    _, det, plural, count, _ = rng.choices(choices, cum_weights=cum_weights)[0]
    adj = _sample_adj(rng, noun) if rng.random() < adj_probability else None
    return NP(noun, det, plural, count, adj)


def _sample_subject(rng: random.Random, verb: Verb) -> NP | int:
    if "person" in verb.subjects.split() and rng.random() < PRONOUN_PROBABILITY:
        return rng.choice(PRONOUN_PERSONS)
    return _sample_np(rng, verb.subjects)


@cache
def _places_for(tags: str) -> tuple[str, ...]:
    return tuple(p for p, allowed in PLACE_TAGS.items() if _fits(tags, allowed))


def _sample_place(rng: random.Random, subject: NP | int) -> str:
    tags = "person" if isinstance(subject, int) else NOUN_TAGS[subject.noun]
    return rng.choice(_places_for(tags))


# Verbs usable in each sentence frame.
FRAME_VERBS: dict[str, tuple[str, ...]] = {
    "loc": tuple(v for v, info in VERBS.items() if info.frame == "loc"),
    "dir": tuple(v for v, info in VERBS.items() if info.frame == "dir"),
    "obj": tuple(v for v, info in VERBS.items() if info.frame == "obj"),
    "obj_loc": tuple(v for v, info in VERBS.items() if info.place_ok),
    "with": tuple(v for v, info in VERBS.items() if info.with_ok),
}


def _sample_clause(rng: random.Random) -> Clause:
    frame = rng.choices(FRAMES, cum_weights=FRAME_CUM_WEIGHTS)[0]
    if frame == "pred":
        subject = _sample_np(rng, "person animal thing food", dets="the the_pl")
        group = ADJ_TAGS[subject.adj][0] if subject.adj else ""
        pred_adj = _sample_adj(rng, subject.noun, avoid_group=group)
        if pred_adj is None:  # food only takes size adjectives: "the big apple is small"
            subject = subject._replace(adj=None)
            pred_adj = _sample_adj(rng, subject.noun)
        assert pred_adj is not None
        return Clause("pred", subject, pred_adj=pred_adj)
    verb = rng.choice(FRAME_VERBS[frame])
    info = VERBS[verb]
    subject = _sample_subject(rng, info)
    subject_noun = subject.noun if isinstance(subject, NP) else ""
    obj = companion = None
    place = ""
    if info.frame == "obj":
        obj = _sample_np(rng, info.objects, info.object_dets, exclude=subject_noun)
    if frame == "with":
        companion = _sample_np(rng, "person animal", "the the_pl a", exclude=subject_noun, adj_probability=0.25)
    if frame != "obj":
        place = _sample_place(rng, subject)
    return Clause(frame, subject, verb, obj, companion, place)


def generate_corpus(n_sentences: int = 8000, seed: int = 0) -> dict[str, list[str]]:
    """N-way parallel corpus: {lang: [sentence, ...]} all lists the same length, line i of every
    language is a translation of line i of every other. Deterministic for a given seed (use
    random.Random(seed), never global random state). English sentences are all distinct."""
    if n_sentences < 0:
        raise ValueError(f"n_sentences must be >= 0, got {n_sentences}")
    rng = random.Random(seed)
    corpus: dict[str, list[str]] = {lang: [] for lang in BUILTIN_LANGUAGES}
    seen: set[str] = set()
    attempts, max_attempts = 0, 50 * n_sentences + 1000
    while len(seen) < n_sentences:
        attempts += 1
        if attempts > max_attempts:
            raise RuntimeError(f"could only make {len(seen)} distinct sentences")
        line = realize(_sample_clause(rng))
        english = line["en"]
        # Very short lines ("I go home.") teach little; duplicates would leak across splits.
        if english in seen or not 4 <= len(english.split()) <= 14:
            continue
        seen.add(english)
        for lang in BUILTIN_LANGUAGES:
            corpus[lang].append(line[lang])
    return corpus
