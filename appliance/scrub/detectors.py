"""Detectors merged by union with Presidio's results, each independent of the NER model.

- address blocks: an anchor (house number + street suffix, a unit, a PO box, a military
  address, a cued house number) widened over the rest of the address: the words before it
  on its line (house number, street name) and the lines/commas after it (unit, town,
  region, postal code, country), so that a whole multi-line address is masked, not only
  its street line;
- digit runs: IBAN-shaped tokens in any case, any phone-shaped run of 8-15 digits in 2-6
  groups (every country's grouping), and any card-shaped run of 13-19 digits, Luhn-valid
  or not (a mistyped card number still identifies its owner: fail closed);
- uncommon words (after Philter, Norgeot et al. 2020): a capitalised word that is not an
  English word of the pinned spaCy model's WordNet-derived lemma index nor a stop word is
  taken for a name; in a record written in lower case, any such word. A name found once
  is masked everywhere in the record, and an honorific before a name goes with it;
- names by position (`name_positions`), whatever words they are: the value of a
  person-role field ("Next of kin: Le Thi Hoa"), a known given name addressed at the start
  of a line ("Ivy - ..."), the given name "will" where the modal verb cannot stand ("is will
  coming"); and around a found name (`propagate`): lower-case initials, a two-letter
  syllable in lower case ("li na"), a word joined to it by "and" ("faisal and noor").

Every regular expression runs under the analysis time limit (a timeout quarantines).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import regex  # type: ignore[import-untyped,unused-ignore]

from appliance.scrub.detection import Detection
from appliance.scrub.recognizers import CAPWORD, NOT_NAMES, STREET_SUFFIXES, extend_name

DISABLED: set[str] = set()
"""Test-only switch: names of detectors ("addresses", "digit_runs", "uncommon_words",
"name_positions", "propagate") the engine skips, so tests can show each protection matters.
No policy or command sets it."""

_WORD = r"[^\W\d_][\w'\u2019.-]*"
UNIT_WORDS = r"(?i:apt|apartment|suite|ste|unit|flat|studio|floor|fl|level|room|rm|box|bldg)"
UNIT = regex.compile(rf"\b{UNIT_WORDS}\.?\s*#?\s*\d{{1,6}}[A-Za-z]?\b|#\s?\d{{1,6}}\b")
SUFFIXES = [
    "street",
    "st",
    "str",
    "avenue",
    "ave",
    "av",
    "road",
    "rd",
    "lane",
    "ln",
    "drive",
    "dr",
    "boulevard",
    "blvd",
    "court",
    "ct",
    "place",
    "pl",
    "square",
    "sq",
    "terrace",
    "ter",
    "way",
    "circle",
    "cir",
    "parkway",
    "pkwy",
    "highway",
    "hwy",
    "trail",
    "trl",
    "crescent",
    "close",
    "row",
    "alley",
    "loop",
    "plaza",
    "park",
    "pike",
    "walk",
    "path",
    "gardens",
    "grove",
    "hill",
    "mews",
    "rue",
    "via",
    "viale",
    "calle",
    "strasse",
    "straße",
    "weg",
    "gasse",
    "allee",
    "laan",
    "plein",
    "straat",
    "vej",
    "gade",
    "gatan",
    "vägen",
    "katu",
    "utca",
    "út",
    "tér",
    "vei",
    "veien",
    "platz",
    "gata",
    "caddesi",
    "sokak",
    "ulica",
    "ul",
    "rua",
    "avenida",
    "estrada",
    "cours",
    "chemin",
    "quai",
    "boulevard",
    "piazza",
    "corso",
    "carrera",
]
SUFFIXES += [w.lower() for w in STREET_SUFFIXES]
_SUFFIX_ALT = "|".join(sorted(set(SUFFIXES), key=len, reverse=True))
UNIT_ANCHOR = regex.compile(
    r"\b(?i:apt|apartment|suite|ste|unit|flat|studio)\.?\s*#?\s*\d{1,6}[A-Za-z]?\b"
)
"""A unit that starts an address on its own (Room 4B or Floor 2 do not)."""
_PREFIX_ALT = (
    "rue|avenue|av|via|viale|vicolo|contrada|stretto|largo|borgo|rotonda|calle|camino|paseo"
    "|pasaje|ronda|carretera|travesía|place|cours|chemin|impasse|allée|boulevard|bd|ul|ulica"
    "|aleja|al|piazza|corso|rua|travessa|alameda|avenida|carrera|plac|strada|plaza|allee"
    "|avinguda|c/"
)
_ARTICLES = r"(?i:de|del|della|di|da|du|des|la|le|do|dos|das|van|von)"
_GLUED = (
    r"(?i:straat|strasse|straße|weg|vej|vegen|veien|gade|gatan|vägen|katu|laan|gasse|allee|tie"
    r"|platz|stræti|gata|gränd)"
)


_LOWER_TYPES = (
    "(?:vei|veien|vegen|vej|gata|gatan|gränd|vägen|tér|út|utca|sokak|caddesi|straße|strasse"
    "|gasse|weg|allee|platz|katu|tie|laan|straat|gade|stræti)")
"""Street types written in lower case after the name ("Pernilles vei", "Erzsébet tér")."""


def _anchors(cased: bool) -> Any:
    word = r"[^\W\d_][\w'\u2019.-]*" if not cased else r"[\p{Lu}\u00c0-\u024f][\w'\u2019.-]*"
    not_stop = r"(?!(?i:the|a|an|and|or|for|of|to|in|on|at|my|with|from|by|is|are|was)\b)"
    name = rf"{not_stop}{word}"
    loose = rf"{not_stop}[^\W\d_][\w'\u2019.-]*"
    prefix = (rf"(?i:{_PREFIX_ALT})" if not cased else
              "(?:" + "|".join(w.capitalize() for w in _PREFIX_ALT.split("|")) + ")")
    suffix = (
        rf"(?i:{_SUFFIX_ALT})"
        if not cased
        else (
            rf"(?:{'|'.join(w.capitalize() for w in sorted(set(SUFFIXES), key=len, reverse=True))})"
        )
    )
    return regex.compile(
        # house number, up to four name words, a street suffix ("Str." abbreviated)
        rf"\b\d{{1,6}}[A-Za-z]?(?:[-/]\d{{1,5}})?\s+(?:{name}\s+){{0,4}}{suffix}\b\.?"
        # a street type before the name (rue, via, calle, ul.)
        rf"|\b\d{{1,6}}[A-Za-z]?,?\s+(?i:{_PREFIX_ALT})\.?\s+(?:{_ARTICLES}\s+)*{word}"
        # a street type first, the name, then the number ("Via Dimas Bonilla 40",
        # "Stretto Azeglio, 7"); capitalised in cased text ("via email" is not a street)
        rf"|\b{prefix}\.?\s+(?:{loose}\s+){{0,4}}?{loose},?\s+\d{{1,5}}[A-Za-z]?\b"
        # name words, a street type, a number ("Gumpendorfer Strasse 44", "Pernilles vei 115")
        rf"|\b(?:{name}\s+){{1,3}}(?:{suffix}|{_LOWER_TYPES})\.?\s+\d{{1,5}}[A-Za-z]?\b(?!\.\d)\.?"
        # a street type glued to the name (Amerveldstraat, Holmevej) then a number
        rf"|\b[^\W\d_](?:[^\W\d_]|-)*{_GLUED}\s+\d{{1,5}}[A-Za-z]?\b"
        # house number, one to four name words, a number (European order: "Delta 116")
        rf"|\b\d{{1,5}}[A-Za-z]?\s+{name}(?:\s+{loose}){{0,3}}\s+\d{{1,5}}[A-Za-z]?\b"
        rf"|(?<=(?i:zip|zip\s+code|postal\s+code|postcode)\s*(?:is|:)?\s*)\d{{5}}(?:-\d{{4}})?\b"
        rf"|{UNIT_ANCHOR.pattern}"
        r"|\b(?i:p\.?\s?o\.?\s+box|psc|unit)\s+\d{1,6}"
        # a postcode line: "3609HA", "E9 9SG", "97497 Dupuis", "87-699 Swidnica"
        r"|(?m:(?:^[ \t>]*|(?<=,[ \t]))(?:\d{2}-\d{3}|\d{4,5}),?[ \t]+[\p{Lu}\u00c0-\u024f][\w'-]+)"
        # a town line ending in a postcode: "Albacete, 23923", "Noida 201301", "Tokyo 153-8902"
        r"|(?m:(?:^[ \t>]*|(?<=\d,[ \t]))[\p{Lu}\u00c0-\u024f][\w'.-]+"
        r"(?:,?[ \t]+[\p{Lu}\u00c0-\u024f][\w'.-]+){0,3},?"
        r"[ \t]+(?:\d{3}-\d{4}|\d{4}-\d{3}|\d{2}-\d{3}|\d{4,6})[ \t]*$)"
        r"|\b[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}\b|(?m:^[ \t>]*\d{4}\s?[A-Z]{2}\b)"
        r"|\bUS[A-Z]{1,3}\s+[^\W\d_]+|\b[ADF]PO\s+A[AEP]\s+\d{5}\b"
        # Polish street abbreviations in lower case: "ul. Marszałkowska 84/92", "al. Jana 3"
        r"|\b(?:ul|al|pl|os)\.[ \t]+[\p{Lu}\u00c0-\u024f][\w'-]+(?:[ \t]+[\w'.-]+){0,3}?"
        r"[ \t]+\d{1,5}(?:/\d{1,5})?"
    )


ANCHORS_CASED = _anchors(cased=True)
ANCHORS_ANY = _anchors(cased=False)
CUES = regex.compile(
    r"(?i:address(?:\s+is)?|addresses|sent\s+to|send\s+(?:it\s+)?to|moved\s+to|live\s+at|"
    r"lives\s+at|living\s+at|located\s+at|office\s+is\s+at|meet\s+me\s+at|ship(?:ped)?\s+to|"
    r"deliver(?:ed)?\s+to|taxi\s+to|arrived\s+at|resides\s+at|residing\s+at|visit\s+us\s+at|"
    r"mail\s+to|based\s+at|find\s+us\s+at|come\s+to|is\s+at|are\s+at|i'?m\s+at|"
    r"we'?re\s+at|staying\s+at)"
    r"\s*(?:here\s+they\s+are)?[:,]?\s*(?:is\s+)?(?:at\s+)?"
    rf"(\d{{1,6}}[A-Za-z]?\s+(?:\d{{1,6}}\s+)?{_WORD}"
    rf"|[^\W\d_][\w'.-]+(?:\s+[\w'.-]+){{0,3}}?,?\s+\d{{1,5}}(?:-\d{{1,5}}|[A-Za-z])?\b"
    rf"|(?i:{_PREFIX_ALT})\s+{_WORD})"
)
_TOKEN = regex.compile(r"[^\s,;]+")
_STOP_ADDRESS = frozenset(
    [
        "to",
        "at",
        "is",
        "are",
        "was",
        "for",
        "and",
        "or",
        "but",
        "in",
        "on",
        "of",
        "the",
        "a",
        "an",
        "my",
        "your",
        "his",
        "her",
        "their",
        "our",
        "this",
        "that",
        "please",
        "thanks",
        "thank",
        "with",
        "from",
        "by",
        "if",
        "so",
        "then",
        "when",
        "where",
        "which",
        "who",
        "what",
        "why",
        "how",
        "can",
        "could",
        "would",
        "should",
        "will",
        "you",
        "i",
        "we",
        "they",
        "he",
        "she",
        "it",
        "me",
        "us",
        "them",
        "last",
        "next",
    ]
)
_CONNECTORS = frozenset(["and", "of", "u", "et", "und", "y", "e", "i"])
"""Words inside an address when an address word follows ("Trinidad and Tobago")."""
_PARTICLES = frozenset(
    [
        "de",
        "del",
        "della",
        "di",
        "da",
        "do",
        "dos",
        "das",
        "du",
        "des",
        "la",
        "le",
        "les",
        "van",
        "von",
        "der",
        "den",
        "ter",
        "ten",
        "op",
        "am",
        "an",
        "im",
        "y",
        "e",
        "el",
        "al",
        "ul.",
        "ul",
        "str.",
        "st.",
        "ave.",
        "rd.",
        "dr.",
        "no.",
        "nr.",
        "nº",
    ]
)


def _is_number(token: str) -> bool:
    """A house number, unit number or postcode ("12", "12b", "07/05", "3609HA", "9SG")."""
    core = token.rstrip(".")
    return (
        len(core) <= 8
        and any(c.isdigit() for c in core)
        and bool(regex.fullmatch(r"[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)?", core))
    )


_PREFIXES = frozenset(_PREFIX_ALT.split("|"))


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def _address_word(token: str, lower_ok: bool) -> bool:
    """Could be part of an address (a number, a capitalised word, a particle)."""
    bare = token.strip("()\"'")
    if len(bare) == 2 and bare.isupper() and bare.isalpha():
        return True  # a state or province code (IN, OR, ME), never a stop word here
    if not bare or bare.lower() in _STOP_ADDRESS or "@" in bare:
        return False
    if _is_number(bare) or bare.lower() in _PARTICLES or bare.lower() in _PREFIXES:
        return True
    if bare[0].islower() and bare.lower() in _stop_words():
        return False
    if not bare[0].isalpha():
        return False
    return bare[0].isupper() or lower_ok


def _block_start(text: str, start: int, lower_ok: bool) -> int:
    """Move `start` left over address words on the same line."""
    line_start = text.rfind("\n", 0, start) + 1
    for m in reversed(list(_TOKEN.finditer(text, line_start, start))):
        token = m.group()
        if (
            text[m.end() : start].strip(" ") not in ("", ",")
            or not _address_word(token, lower_ok)
            or token.endswith((":", "!", "?"))
            or (token.endswith(".") and len(token) > 6 and not _is_number(token))
        ):
            break
        start = m.start()
    return start


def _block_end(text: str, end: int, lower_ok: bool) -> int:
    """Move `end` right over the rest of the address (unit, town, region, postal code,
    country), across commas and single line breaks."""
    pos, words = end, 0
    tokens = list(_TOKEN.finditer(text, end, min(len(text), end + 400)))
    for i, m in enumerate(tokens):
        gap = text[pos : m.start()]
        if (
            gap.count(",") > 1
            or words >= 12
            or (
                "\n\n" in gap.replace(" ", "").replace("\t", "")
                and _LAST_LINE.match(text, m.start()) is None
            )
        ):
            break
        token = m.group()
        if token.lower() in _CONNECTORS:
            follow = tokens[i + 1].group() if i + 1 < len(tokens) else ""
            if (
                follow
                and _address_word(follow.rstrip(".,:;!?"), lower_ok)
                and (follow[0].isupper() or follow[0].isdigit() or lower_ok)
            ):
                continue
            break
        stripped = token.lstrip("?>*-|\u2022")
        lead = len(token) - len(stripped)
        if not stripped:
            continue
        core = stripped.rstrip(".,:;!?\"')")
        if (
            core
            and core[0].islower()
            and core.lower() not in _STOP_ADDRESS
            and core.lower() not in _stop_words()
            and "@" not in core
            and i + 1 < len(tokens)
            and tokens[i + 1].group()[:1].isupper() | tokens[i + 1].group()[:1].isdigit()
            and core == stripped
        ):
            pos, words = m.start() + lead + len(core), words + 1  # "Kámen u Pacova"
            continue
        tail = stripped[len(core) :]
        numbered = (len(core) <= 3 and i + 1 < len(tokens)
                    and _is_number(tokens[i + 1].group().rstrip(".,;")))
        if numbered and (core.lower() in _NUMBER_LABELS or (
                tail == "." and core.lower() not in ("tel", "fax", "ph", "mob", "tlf"))):
            pos, words = m.start() + lead + len(stripped), words + 1  # "No: 112/4", "m. 15"
            continue
        if not core or not _address_word(core, lower_ok) or (
                sum(c.isdigit() for c in core) > 7 and regex.search(r"\d[-(]|\(\d", core)):
            break  # a phone number starts: not part of the address
        tail = stripped[len(core) :]
        if ":" in tail:
            break  # "Mobile:", "Tel:" start the next field
        pos, words = m.start() + lead + len(core), words + 1
        if any(c in tail for c in "!?:;") or (
            tail.startswith(".") and len(core) > 3 and not _is_number(core)
        ):
            break
    return pos


_NUMBER_LABELS = frozenset(["no", "nr", "nº", "n", "num", "m", "lok", "apt", "ap", "kv", "d"])
"""Short labels before a house or flat number ("No: 112/4", "m. 15", "lok. 3")."""
_LAST_LINE = regex.compile(r"[^\W\d_][^\n]{0,40}\d{4,6}[ \t]*(?:\n|$)")
"""A country/town line with a postal code, after a blank line inside an address."""


CORNER = regex.compile(
    r"(?i:\bthe[ \t]+)?\b(?i:corner)[ \t]+of[ \t]+(?:[^\s,;]+[ \t]+){1,6}?(?:and|&)[ \t]+"
    rf"(?:(?:[^\s,;]+[ \t]+){{0,4}}?(?i:{_SUFFIX_ALT})\b\.?|\p{{Lu}}[\w'-]+)")
"""An intersection: "the corner of 149 William Street and Hill Road", "corner of Main and
Elm"."""
_CAPS = r"\p{Lu}[\w'\u2019-]*"
_CASED_PREFIX = "(?:" + "|".join(w.capitalize() for w in _PREFIX_ALT.split("|")) + ")"
_CASED_SUFFIX = "(?:" + "|".join(w.capitalize() for w in sorted(set(SUFFIXES), key=len,
                                                                 reverse=True)) + ")"
_STREET = (rf"(?:{_CASED_PREFIX}\.?[ \t]+(?:{_CAPS}[ \t]+){{0,3}}{_CAPS}"
           rf"|(?:{_CAPS}[ \t]+){{1,3}}{_CASED_SUFFIX}\b\.?)")
INTERSECTION = regex.compile(rf"\b{_STREET}[ \t]+(?:x|X|&|/|and|at)[ \t]+{_STREET}")
"""Two named streets joined ("Rue Carnot x Rue Félix Faure", "Main Street and Elm
Avenue"): an address without a house number."""
ADDRESS_FIELD = regex.compile(
    r"(?im)^[ \t]*(?:(?![^\n:]*(?:e-?mail|ip|mac|web|url))[^\W\d_][^\n:]{0,30}[ \t])?"
    r"address(?:[ \t]+line)?(?:[ \t]*\d)?[ \t]*:[ \t]*([^\W_][^\n]{2,100}?)[ \t]*$")
"""The value of an address field at the start of a line ("Address line 2: Adyar, Chennai
600020", "Billing address: ..."), when it holds a digit or a comma."""


def addresses(text: str, timeout: float) -> list[Detection]:
    """Street address blocks in `text`."""
    lower_ok = not any(c.isupper() for c in text)
    anchors = ANCHORS_ANY if lower_ok else ANCHORS_CASED
    spans = [(m.start(), m.end()) for m in anchors.finditer(text, timeout=timeout)]
    spans += [(m.start(1), m.end(1)) for m in CUES.finditer(text, timeout=timeout)]
    low = text.lower()
    if "corner" in low:
        spans += [(m.start(), m.end()) for m in CORNER.finditer(text, timeout=timeout)]
    spans += [(m.start(), m.end()) for m in INTERSECTION.finditer(text, timeout=timeout)]
    if "address" in low:
        spans += [(m.start(1), m.end(1)) for m in ADDRESS_FIELD.finditer(text, timeout=timeout)
                  if regex.search(r"\d|,", m.group(1)) is not None]
    out = []
    for first, end in spans:
        start = _previous_lines(text, _block_start(text, first, lower_ok))
        out.append(
            Detection("STREET_ADDRESS", start, max(end, _block_end(text, end, lower_ok)), 0.6)
        )
    return out


_STREET_LINE = regex.compile(
    rf"[ \t>]*(?=[^\n]*\d|[^\n]*\b(?i:{_SUFFIX_ALT}|{_PREFIX_ALT})\b)[^\n]{{3,60}}\n[ \t>]*$"
)


_HOUSE_LINE = regex.compile(
    r"[ \t>]*(?:The[ \t]+)?(?:[\p{Lu}\u00c0-\u024f][\w'-]*[ \t]+){0,3}"
    r"(?:House|Cottage|Cottages|Rectory|Vicarage|Farm|Farmhouse|Lodge|Manor|Hall|Court|Mansions"
    r"|Apartments|Residency|Residences|Building|Tower|Towers|Villa|Villas|Mill|Barn|Grange"
    r"|Flats|Chambers|Heights|Estate|Block|Wing)[ \t]*\n[ \t>]*")
"""A house or building name line above a street line (no number, no street type)."""


def _previous_lines(text: str, start: int) -> int:
    """Move `start` back over up to three preceding address lines (a street line before a
    postcode line: it holds a number or a street type, and no stop word; a house name)."""
    for _ in range(3):
        line_start = text.rfind("\n", 0, max(0, text.rfind("\n", 0, start))) + 1
        line = text[line_start:start]
        if _HOUSE_LINE.fullmatch(line) is not None:  # "The Old Rectory" above the street
            start = line_start + len(line) - len(line.lstrip(" \t>"))
            break
        if (
            not line.strip()
            or _STREET_LINE.fullmatch(line) is None
            or any(w.lower() in _STOP_ADDRESS for w in _TOKEN.findall(line))
        ):
            break
        start = line_start + len(line) - len(line.lstrip(" \t>"))
    return start


DIGIT_RUN = regex.compile(
    r"(?<![\w.+-])\+?\(?\d{1,5}\)?(?:[ .\-\u2010\u2011\u2013]{1,2}\(?\d{1,6}\)?){1,6}"
    r"(?:\s*(?:x|ext\.?)\s*\d{1,6})?(?!\w|-\d)|(?<![\w+])\+?\d{8,19}(?!\w)"
)
_DATE_LIKE = regex.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}$")


def digit_runs(text: str, timeout: float) -> list[Detection]:
    """Phone-shaped (8-15 digits) and card-shaped (13-19 digits) runs."""
    out = []
    for m in DIGIT_RUN.finditer(text, timeout=timeout):
        run = m.group()
        number = regex.split(r"(?i)\s*(?:x|ext)", run)[0]
        digits = sum(c.isdigit() for c in number)
        if _DATE_LIKE.match(number) or digits < 8:
            continue
        if 13 <= digits <= 19 and regex.fullmatch(r"[\d \-]+", number):
            out.append(Detection("CREDIT_CARD", m.start(), m.start() + len(number), 0.5))
        if digits <= 15:
            out.append(Detection("PHONE_NUMBER", m.start(), m.end(), 0.5))
    out += [
        Detection("IBAN_CODE", m.start(), m.end(), 0.5)
        for m in IBAN_SHAPE.finditer(text, timeout=timeout)
        if sum(c.isdigit() for c in m.group()) >= 8
    ]
    return out


IBAN_SHAPE = regex.compile(r"(?i)\b[a-z]{2}\d{2}(?:[ ]?[a-z0-9]{4}){2,7}(?:[ ]?[a-z0-9]{1,4})?\b")
"""IBAN-shaped, any case, checksum or not (fail closed, like card-shaped runs)."""


@lru_cache(maxsize=4)
def english_words(model_path: Path | None) -> frozenset[str]:
    """Lower-case English words: the pinned spaCy model's lemma index (WordNet-derived) and
    exceptions, and spaCy's stop words. Empty without a model (then only stop words)."""
    from spacy.lang.en.stop_words import STOP_WORDS

    words = set(STOP_WORDS)
    if model_path is not None and (model_path / "lemmatizer" / "lookups").is_dir():
        from spacy.lookups import Lookups

        lookups = Lookups().from_disk(model_path / "lemmatizer" / "lookups")
        for entries in lookups.get_table("lemma_index").values():
            words.update(w for w in entries if "_" not in w)
        for table in lookups.get_table("lemma_exc").values():
            words.update(table)
    return frozenset(words)


_SUFFIX_RULES = (
    ("ies", "y"),
    ("es", ""),
    ("s", ""),
    ("ed", ""),
    ("ed", "e"),
    ("ing", ""),
    ("ing", "e"),
    ("ly", ""),
    ("er", ""),
    ("est", ""),
    ("'s", ""),
    ("\u2019s", ""),
)


def is_english(word: str, words: frozenset[str]) -> bool:
    """`word` (any case) or a regular inflection of it is an English word."""
    low = word.lower()
    if low in words:
        return True
    return any(
        low.endswith(s) and low[: -len(s)] + r in words
        for s, r in _SUFFIX_RULES
        if len(low) > len(s) + 2
    )


_AROUND = regex.compile(r"[\w/=:\\]*[\d_/=\\][\w]*$|[\w.]*@$")
_AFTER = regex.compile(r"[\w]*[\d_]|[/=(]|\\(?!['\"])|\.[a-z]")
"""What follows a word of code or a path; an escaped quote (`\\'s` in JSON-escaped chat)
is not code."""
_CONTRACTION = regex.compile(r"(?i)['\u2019](?:s|d|ll|re|ve|m|t)$|n['\u2019]t$")
_ALPHA = regex.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
HONORIFIC = regex.compile(
    r"(?i:\b(?:mr|mrs|ms|miss|mx|dr|prof|sir|dame|rev|fr|sr|jr|phd|md|pan|pani|herr|frau"
    r"|sig|sig\.ra|sra|mme|mlle|dott|ing|dipl|mag)\b\.?\s*)$"
)


_GIVEN_BEFORE = regex.compile(
    r"(?<![\w.])([A-Z][^\W\d_]+)[ \t]+(?:(?i:de|van|von|der|den|da|di|du|le|la|bin|al)[ \t]+)*$")
POSTNOMINAL = regex.compile(
    r",?[ \t]+(?:(?i:phd|md|dvm|dds|dmd|mba|msc|bsc|esq|jr|sr|rn|cpa|frcs|mrcp)\b\.?"
    r"|(?:II|III|IV)\b)(?:,?[ \t]+(?i:phd|md|mba|esq|jr|sr)\b\.?)*")
INITIALS = regex.compile(r"(?<![\w.])(?:[A-Z]\.[ \t]?){1,3}[ \t]*$")


@lru_cache(maxsize=1)
def name_gazetteer() -> frozenset[str]:
    """Given and family names of every locale the Faker package ships (about 44,000;
    census- and registry-derived lists, none from an evaluation set), lower-cased, less
    stop words."""
    import importlib
    import pkgutil

    from faker.providers import person
    from spacy.lang.en.stop_words import STOP_WORDS

    names: set[str] = set()
    for module in pkgutil.iter_modules(person.__path__):
        provider = getattr(importlib.import_module(f"{person.__name__}.{module.name}"),
                           "Provider", None)
        for attr in ("first_names", "first_names_male", "first_names_female",
                     "first_names_nonbinary", "last_names"):
            values = getattr(provider, attr, None)
            if not isinstance(values, (list, tuple, dict, set, frozenset)):
                continue
            names.update(v.lower() for v in values if isinstance(v, str) and len(v) > 2)
    return frozenset(names - set(STOP_WORDS))


def _lower_line(text: str, pos: int) -> bool:
    """The line around `pos` has letters and none of them upper case."""
    begin = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[begin:end if end >= 0 else len(text)]
    return not any(c.isupper() for c in line)


def _upper_line(text: str, pos: int) -> bool:
    """The line around `pos` is written in capitals (a headline) and has several words."""
    begin = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[begin:end if end >= 0 else len(text)]
    return not any(c.islower() for c in line) and len(_ALPHA.findall(line)) >= 3


def _next_capitalised(text: str, end: int) -> bool:
    """A capitalised word that is not a stop word follows on the same line: a known name
    opening a sentence with its surname after it ("Hope Solo , the former ...")."""
    follow = CAPWORD.match(text, end)
    return (follow is not None and "\n" not in text[end:follow.start(1)]
            and follow.group(1).lower() not in _stop_words()
            and follow.group(1) not in NOT_NAMES and follow.group(1) not in _NOT_SUBJECTS)


def _sentence_initial(text: str, start: int) -> bool:
    before = text[max(0, start - 4):start].rstrip(" \t\"'(*>-")
    return not before or before[-1] in ".!?:\n;"


def uncommon_words(text: str, words: frozenset[str], timeout: float,
                   names: frozenset[str] = frozenset()) -> list[Detection]:
    """Capitalised words that are not English words, or that are known names not at the
    start of a sentence; in a lower-case text, every such word and every known name."""
    if not words:
        return []
    lower = not any(c.isupper() for c in text)
    out = []
    for m in _ALPHA.finditer(text, timeout=timeout):
        around = _AROUND.search(text, max(0, m.start() - 40), m.start())
        after = _AFTER.match(text, m.end())
        if (around and around.group()) or (after and after.group()):
            continue  # part of code, a digest, a path or an identifier: not a name
        word = _CONTRACTION.sub("", m.group())
        if len(word) >= 3 and not lower and word.islower() and word in names and _lower_line(
                text, m.start()):  # a known name in a lower-case line ("i'm lisa's daughter")
            out.append(Detection("PERSON", m.start(), m.start() + len(word), 0.4))
            continue
        if len(word) < 2 or not (lower or word[0].isupper()):
            continue
        if word.isupper() and len(word) <= 4 and (len(word) < 3 or not _upper_line(
                text, m.start())):
            continue  # acronyms, state codes: not names (unless the line is all capitals)
        initial = _sentence_initial(text, m.start())
        known = word.lower() in names and (lower or not initial or (
            word not in _NOT_SUBJECTS and _next_capitalised(text, m.start() + len(word))))
        if known or not is_english(word, words) or (
                initial and not lower and _subject(text, m.end(), word, words)):
            end = m.start() + len(word)
            out.append(Detection("PERSON", m.start(), extend_name(text, end) if not lower
                                 else end, 0.4))  # and a surname after it ("Callum MacLeod")
    return out


_FINITE = frozenset([
    "said", "says", "told", "added", "has", "had", "is", "was", "will", "would", "shall",
    "should", "can", "could", "may", "might", "must", "did", "does", "do", "was", "were",
    "are", "remains", "remained", "also", "later", "then", "who", "went", "came", "made",
    "took", "gave", "wrote", "asked", "replied", "explained", "noted"
])
"""Words after a sentence's subject ("Hart denied", "King shall notify")."""
_NEXT_WORD = regex.compile(r"(?:['\u2019]s)?[ \t]+([a-z]+)\b")


def _subject(text: str, end: int, word: str, words: frozenset[str]) -> bool:
    """A capitalised word that opens a sentence as its bare subject, followed by a finite
    verb: a surname used alone ("Hart denied", "Hill denies", "Son has led"), however
    common a word it also is. Stop words, capitalised function words and plural common
    nouns ("Residents said") are not taken."""
    low = word.lower()
    if low in _stop_words() or word in _NOT_SUBJECTS or (
            low.endswith("s") and low[:-1] in words and not low.endswith("ss")) or (
            len(low) > 5 and low.endswith(("ed", "ing", "ly")) and is_english(low, words)):
        return False  # "Residents said", "Discussed results", "Finally was"
    follow = _NEXT_WORD.match(text, end)
    if follow is None:
        return False
    verb = follow.group(1)
    return verb in _FINITE or (len(verb) > 3 and (
        (verb.endswith("ed") and is_english(verb, words))
        or (verb.endswith("s") and is_english(verb, words) and verb not in _stop_words())))


_NOT_SUBJECTS = frozenset([
    "Please", "Thanks", "Thank", "Hello", "Hi", "Hey", "Dear", "Yes", "No", "Note", "Summary",
    "Subject", "Re", "Fwd", "Ok", "Okay", "Sure", "Sorry", "Welcome", "Regards", "Cheers",
    "Today", "Yesterday", "Tomorrow", "Tonight", "Here", "There", "Now", "Then", "Kind",
    "Best", "Warm", "Warmest", "Many", "Warmly", "Sincerely", "Yours", "Love", "Greetings",
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"
])


MODAL_NAMES = frozenset(["will", "may", "can"])
"""Given names that are also modal verbs (and stop words, so no other pass takes them)."""
_PERSON_LABELS = (
    r"(?:(?:full|first|last|family|given|middle|maiden|patient|customer|client|contact|"
    r"account|guest|student|employee|applicant|caller|user)[ \t]+)?names?"
    r"|first[ \t]+names|surname|forenames?|patient|customer|client|applicant|tenant|landlord|"
    r"guest|witness(?:[ \t]+\d)?|employee|policy[ \t]?holder|insured|claimant|beneficiary|"
    r"recipient|sender|signed|signature|student|pupil|advisor|adviser|supervisor|guardian|"
    r"parent|next[ \t]+of[ \t]+kin|emergency[ \t]+contact|contact[ \t]+(?:name|person)|"
    r"account[ \t]+(?:holder|name|owner)|card[ \t]?holder|(?:requested|approved|prepared|"
    r"reviewed|authori[sz]ed|referred|signed|reported|submitted|completed)[ \t]+by|"
    r"referring[ \t]+(?:gp|doctor|physician|clinician)|attending(?:[ \t]+physician)?|"
    r"physician|doctor|gp|nurse|agent|(?:name[ \t]+of[ \t]+)?deceased|spouse|partner|"
    r"passenger|traveller|traveler|driver|owner|holder|buyer|seller|debtor|creditor|"
    r"defendant|plaintiff|respondent|petitioner|assignee|reporter|author|attendee|member|"
    r"subscriber|consignee|addressee|to|from|cc|attn|fao")
FIELD = regex.compile(
    rf"(?im)^[ \t]*(?:{_PERSON_LABELS})(?:[ \t]*\([^)\n]{{0,30}}\))?[ \t]*:[ \t]*"
    r"((?:(?i:mr|mrs|ms|miss|mx|dr|prof)\.?[ \t]+)?[^\W\d_][^\W\d_'\u2019.-]*"
    r"(?:[ \t]?[-'\u2019.,]?[ \t]?[^\W\d_][^\W\d_'\u2019.-]*){0,4})(?=[ \t]*(?:$|\(|\||<|,|"
    r"[ \t]{2}|\t))")
"""A person-role field label at the start of a line ("Name:", "Next of kin:", "Approved by:",
"Name (last, first):") and the name-shaped value after it, up to the end of the line, a
bracket, a bar, a comma or a wide gap."""
_SURNAME_FIRST = regex.compile(
    r",[ \t]*([^\W\d_][^\W\d_'\u2019-]*(?:[ \t][^\W\d_][^\W\d_'\u2019-]*)?)[ \t]*$", regex.M)
_VOCATIVE = regex.compile(
    r"(?m)^[ \t]*([^\W\d_][^\W\d_'\u2019-]+)[ \t]*(?:,|[ \t]-|[ \t]\u2013|[ \t]\u2014)[ \t]")
_MODAL_BEFORE = regex.compile(
    r"(?i)\b(?:is|are|was|were|am|did|does|do|has|have|had|help|helped|ask|asked|tell|told|let|"
    r"call|called|text|texted|ping|pinged|email|emailed|message|remind|thank|thanks|thx|meet|"
    r"met|cc|see|saw|page|paged|hi|hey|hello|bye|dear|with|for|from|by|via|about|to)[ \t]+$")
_MODAL_AFTER = regex.compile(
    r"[ \t]+(?:said|says|asked|told|wrote|mentioned|called|replied|confirmed|thinks|thought|"
    r"wants|wanted|needs|needed|and|is|was|has|had)\b")
_DETERMINER = regex.compile(r"(?i)\b(?:the|a|this|that|his|her|my|your|their|our|its|last|"
                            r"living|free|good|ill|own|new|of)[ \t]+$")
_NOT_VALUES = frozenset(["n/a", "na", "none", "unknown", "yes", "no", "same", "self", "tbc",
                         "tbd", "see", "above", "below", "male", "female", "other"])


def name_positions(text: str, names: frozenset[str], timeout: float) -> list[Detection]:
    """Names found by their position, whatever words they are: the value of a person-role
    field ("Customer: Will Rose", "Name (last, first): Kim, Min-jun"), a known given name
    addressed at the start of a line ("Will, can you ...", "Ivy - I've cc'd ..."), and the
    given name "will" where the modal verb cannot stand ("is will coming", "help will
    reset", "thanks will", "will said")."""
    out = [*_field_values(text, timeout)] if ":" in text else []
    for m in _VOCATIVE.finditer(text, timeout=timeout):
        word = m.group(1)
        if (word.lower() in names or word.lower() in MODAL_NAMES) and (
                word[0].isupper() or _lower_line(text, m.start(1))) and (
                word not in _NOT_SUBJECTS):
            out.append(Detection("PERSON", m.start(1), m.end(1), 0.4))
    wills = regex.finditer(r"(?i)\bwill\b", text, timeout=timeout) if "ill" in text.lower() else ()
    for m in wills:
        if not (m.group()[0].isupper() or _lower_line(text, m.start())) or _DETERMINER.search(
                text, max(0, m.start() - 10), m.start()) is not None:
            continue  # "i will" in cased text, "the Will of the deceased", "a living will"
        capital_inside = m.group()[0].isupper() and not _sentence_initial(text, m.start())
        if capital_inside or _MODAL_BEFORE.search(
                text, max(0, m.start() - 12), m.start()) is not None or _MODAL_AFTER.match(
                text, m.end()) is not None:
            out.append(Detection("PERSON", m.start(), m.end(), 0.4))
    return out


def _field_values(text: str, timeout: float) -> list[Detection]:
    """The name-shaped value of each person-role field; "Surname, First" kept whole."""
    out = []
    for m in FIELD.finditer(text, timeout=timeout):
        value, start, end = m.group(1), m.start(1), m.end(1)
        if value.lower() in _NOT_VALUES:
            continue
        comma = value.find(",")
        if comma >= 0 and (_SURNAME_FIRST.match(text, start + comma) is None or (
                "(" not in text[m.start():start] and len(value[comma + 1:].split()) > 2)):
            end = start + comma  # "Mark Summers, brother"
        if end > start:
            out.append(Detection("PERSON", start, end, 0.45))
    return out




_BRIDGE = regex.compile(
    r"(?:\s+|\s+(?:(?i:van|von|de|del|della|der|den|di|da|du|dos|das|le|la|ten|ter|bin|ibn|"
    r"al|el|y|\'s|st\.?|mac|mc|o\')\s+){1,3})")


_LOWER_INITIALS = regex.compile(r"(?<![\w.])(?:[a-z]\.[ \t]?){1,3}[ \t]*$")
_SHORT_AFTER = regex.compile(r"[ \t]([a-z]{2})\b(?![.'\u2019-]\w)")
_AND_BEFORE = regex.compile(
    r"(?<![\w'\u2019-])([^\W\d_][^\W\d_'\u2019-]{2,})[ \t]+(?:and|&)[ \t]+$")
_COMMA_BEFORE = regex.compile(r"(?<![\w'\u2019-])([^\W\d_][^\W\d_'\u2019-]{2,}),[ \t]+$")
_COMMA_AFTER = regex.compile(r",[ \t]+([^\W\d_][^\W\d_'\u2019-]{2,})(?=[ \t]*(?:,|and\b|&|$))",
                             regex.M)
_AND_AFTER = regex.compile(r"[ \t]+(?:and|&)[ \t]+([^\W\d_][^\W\d_'\u2019-]{2,})(?![\w'\u2019-])")


def _around(text: str, d: Detection, given: frozenset[str]) -> list[Detection]:
    """Around a detected name: lower-case initials before it and a two-letter syllable
    after it in a lower-case line ("s. rahman", "li na"), a word joined to it by "and", a
    known name (of `given`) next to it in a list ("Jan, Kristi, Stephen")."""
    out = []
    lower_line = _lower_line(text, d.start)
    if lower_line:
        initials = _LOWER_INITIALS.search(text, max(0, d.start - 12), d.start)
        if initials is not None:  # "s. rahman", "a. k. mishra"
            out.append(Detection("PERSON", initials.start(), d.start, 0.4))
        short = _SHORT_AFTER.match(text, d.end)
        if short is not None and short.group(1) not in _stop_words():
            out.append(Detection("PERSON", d.end, short.end(), 0.4))  # "li na"
    for pair in (_AND_BEFORE.search(text, max(0, d.start - 40), d.start),
                 _AND_AFTER.match(text, d.end)):  # "faisal and noor", "Tom and Jerry"
        if pair is not None and (lower_line or pair.group(1).lower() in given) and (
                _coordinated(pair.group(1), lower_line)):
            out.append(Detection("PERSON", pair.start(1), pair.end(1), 0.4))
    for pair in (_COMMA_BEFORE.search(text, max(0, d.start - 40), d.start),
                 _COMMA_AFTER.match(text, d.end)):
        if pair is not None and pair.group(1).lower() in given and _coordinated(
                pair.group(1), lower_line):
            out.append(Detection("PERSON", pair.start(1), pair.end(1), 0.4))  # "Jan, Kristi"
    return out


def _coordinated(word: str, lower_line: bool) -> bool:
    """A word joined by "and" to a detected name is a name too ("Tom and Jerry", "faisal
    and noor"): a capitalised known name in cased text, any word in a lower-case line;
    never a stop word."""
    return (word[0].isupper() or lower_line) and word.lower() not in _stop_words() and (
        word not in _NOT_SUBJECTS) and not (word.isupper() and len(word) <= 4)


def propagate(text: str, found: Iterable[Detection], timeout: float,
              given: frozenset[str] = frozenset()) -> list[Detection]:
    """Every other occurrence of a detected name's words, honorifics and initials before
    names, and a known given name (of `given`, lower case) right before a detected name
    ("Cyprian Pacyga", "Naomi de Grote"), even where it is also an English word."""
    found = list(found)
    lower = not any(c.isupper() for c in text)
    names = {
        w
        for d in found
        if d.entity == "PERSON"
        for w in _ALPHA.findall(text[d.start : d.end])
        if len(w) > 2 and (w[0].isupper() or lower) and w.lower() not in _STOP_ADDRESS
    }
    out = []
    if names:
        alt = "|".join(regex.escape(n) for n in sorted(names, key=len, reverse=True))
        out += [
            Detection("PERSON", m.start(), m.end(), 0.4)
            for m in regex.finditer(rf"(?<!\w)(?:{alt})(?!\w)", text, timeout=timeout)
        ]
    persons = sorted((d for d in [*found, *out] if d.entity == "PERSON"),
                     key=lambda d: d.start)
    for d in persons:
        head = HONORIFIC.search(text, max(0, d.start - 10), d.start)
        if head is not None:
            out.append(Detection("PERSON", head.start(), d.start, 0.4))
        before = _GIVEN_BEFORE.search(text, max(0, d.start - 40), d.start)
        if before is not None and (before.group(1).lower() in given or (
                before.group(1).lower() in MODAL_NAMES and given)):
            out.append(Detection("PERSON", before.start(), d.start, 0.4))  # "Will Rose"
        out += _around(text, d, given)
        letters = POSTNOMINAL.match(text, d.end)
        if letters is not None:  # "Terry Cardoso PhD", "Amanda Sultygov MD"
            out.append(Detection("PERSON", d.end, letters.end(), 0.4))
        initials = INITIALS.search(text, max(0, d.start - 12), d.start)
        if initials is not None:  # "S. Iqbal", "A. P. J. Abdul Kalam"
            out.append(Detection("PERSON", initials.start(), d.start, 0.4))
    for left, right in pairwise(persons):
        if 0 < right.start - left.end <= 20 and _BRIDGE.fullmatch(
                text, left.end, right.start) is not None:
            out.append(Detection("PERSON", left.end, right.start, 0.4))  # "Jet van den Heuvel"
    return out
