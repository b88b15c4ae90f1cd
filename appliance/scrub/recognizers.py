"""Recognizers beyond Presidio's defaults, for the identifiers training data carries.

Each is a Presidio `EntityRecognizer` whose regular expressions run under a timeout with the
`regex` module; unlike Presidio's own pattern recognizers, a timeout here raises
`AnalysisTimeoutError` (so the record is quarantined) instead of silently skipping the pattern.

What each adds (chosen by measurement on tests/data/pii_dev.json, see docs/benchmarks.md):
- catalogue: the `appliance.patterns` detectors (secrets, passwords in text, cards, IBANs,
  SSNs, IPs, e-mails, phone numbers in more formats than Presidio's region loop finds).
- street addresses: house number + capitalised street name + a USPS street suffix, with
  optional unit (Apt., Suite, Unit, Flat, Studio), or a unit line before the street.
- person names: honorific / role cues ("Dr.", "Patient", "my name is") and a first-name
  gazetteer, extended over the following capitalised surname; and NER names widened the same.
- usernames, ages, ZIP codes, US driver licences (with context), UUIDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import regex  # type: ignore[import-untyped,unused-ignore]

from appliance import patterns

try:  # presidio is a heavy import: this module is only imported by the scrub engine
    from presidio_analyzer import EntityRecognizer, RecognizerResult
except ImportError as exc:  # pragma: no cover - the lock always installs presidio
    raise ImportError("presidio-analyzer is required for scrubbing") from exc


def _words(text: str) -> list[str]:
    return text.split()


class AnalysisTimeoutError(Exception):
    """A recognizer's regular expression ran past its time limit."""


_SUFFIX_TEXT = (
    "Alley Avenue Ave Branch Bridge Brook Brooks Burg Burgs Bypass Camp Canyon Cape Causeway "
    "Center Centers Circle Circles Cir Cliff Cliffs Club Common Corner Corners Course Court "
    "Courts Ct Cove Coves Creek Crescent Crest Crossing Crossroad Curve Dale Dam Divide Drive "
    "Drives Dr Estate Estates Expressway Expy Extension Extensions Fall Falls Ferry Field Fields "
    "Flat Flats Ford Fords Forest Forge Forges Fork Forks Fort Freeway Fwy Garden Gardens "
    "Gateway Glen Glens Green Greens Grove Groves Harbor Harbors Haven Heights Highway Hwy Hill "
    "Hills Hollow Inlet Island Islands Isle Junction Junctions Key Keys Knoll Knolls Lake Lakes "
    "Land Landing Lane Ln Light Lights Loaf Lock Locks Lodge Loop Mall Manor Manors Meadow "
    "Meadows Mews Mill Mills Mission Motorway Mount Mountain Mountains Neck Orchard Oval "
    "Overpass Park Parks Parkway Parkways Pkwy Pass Passage Path Pike Pine Pines Place Pl Plain "
    "Plains Plaza Point Points Port Ports Prairie Radial Ramp Ranch Rapid Rapids Rest Ridge "
    "Ridges River Road Roads Rd Route Row Rue Run Shoal Shoals Shore Shores Skyway Spring "
    "Springs Spur Spurs Square Squares Sq Station Stravenue Stream Street Streets St Summit "
    "Terrace Ter Throughway Trace Track Trafficway Trail Trl Tunnel Turnpike Underpass Union "
    "Unions Valley Valleys Via Viaduct View Views Village Villages Ville Vista Walk Walks Wall "
    "Way Ways Well Wells Close Parade Esplanade Promenade Quay Rise Wynd Gate Gardens Grange "
    "Chase Drove Approach Circuit Boulevard Blvd Broadway Concourse Crossway "
    # Australia Post / Canada Post street types
    "Access Alleyway Amble Anchorage Arcade Artery Basin Beach Bend Block Brace Brae Break "
    "Brow Byway Centre Centreway Circlet Circus Colonnade Copse Corso Courtyard Cross Cruiseway "
    "Cutting Dell Deviation Dip Distributor Driveway Edge Elbow End Entrance Fairway Firetrail "
    "Follow Footway Foreshore Formation Front Frontage Gap Gates Glade Ground Gully Highroad "
    "Interchange Intersection Laneway Lees Line Link Little Lookout Lower Meander Mew Nook "
    "Outlook Parklands Part Pathway Piazza Plateau Pocket Quad Quadrangle Quadrant Quays Ramble "
    "Range Reach Reserve Retreat Ride Ridgeway Ring Riverway Riviera Roadside Roadway Ronde "
    "Rosebowl Rotary Round Siding Slope Sound Stairs Steps Strand Strip Subway Tarn "
    "Thoroughfare Tollway Top Tor Towers Trailer Triangle Trunkway Turn Upper Vale Villas Wade "
    "Walkway"
)
STREET_SUFFIXES = _words(_SUFFIX_TEXT)
"""USPS Publication 28 street suffixes (and common abbreviations), UK ones, and the
Australia Post / Canada Post street types."""

UNIT = (r"(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat|Studio|Floor|Fl\.?|Level|Room|Rm\.?|#)"
        r"\s*[0-9]{1,5}[A-Za-z]?")
_CAP = r"[A-Z][a-zA-Z'\u2019-]+"
_SUFFIX = "|".join(sorted(set(STREET_SUFFIXES), key=len, reverse=True))
ADDRESS = regex.compile(
    rf"(?:\b{UNIT},?\s+)?"  # a unit line before the street (UK, AU style)
    rf"(?:\b\d{{1,6}}[A-Za-z]?(?:[-/]\d{{1,5}})?\s+(?:(?:{_CAP}|\d{{1,3}}(?:st|nd|rd|th))\s+){{0,3}}"
    rf"(?:{_CAP}\s+)?(?:{_SUFFIX})\b\.?"
    rf"|(?<={UNIT},?\s+)(?:{_CAP}\s+){{1,3}}(?:{_SUFFIX})\b\.?)"
    rf"(?:,?\s+{UNIT}\b)?"
    rf"|\b(?:P\.?O\.?\s+Box|PSC|Unit)\s+\d{{1,6}}(?:,?\s+Box\s+\d{{1,6}})?")

HONORIFICS = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Rev|Nurse|Officer)\.?"
NAME_CUES = (
    r"(?i:my name is|my name's|i am|i'm|this is|name:?|called|named|signed|regards,|thanks,"
    r"|patient:?|pt:?|customer:?|client:?|cardholder|account holder|account owner:?|owner:?"
    r"|beneficiary|contact:?|from:?|cc:?|attn:?|dear|hi|hello|hey|ask for|spoke to"
    r"|daughter|son|wife|husband|mother|father|sister|brother|kin|nurse|doctor|agent|visited by"
    r"|referred by|requested by|on behalf of|emergency contact)"
)
_NAME = r"[A-Z][a-z]+(?:[A-Z][a-z]+)?(?:['\u2019-][A-Z]?[a-z]+)?"
CUED_NAME = regex.compile(
    rf"(?:(?<=\b{HONORIFICS}\s+)|(?<=\b{NAME_CUES}\s+))({_NAME}(?:\s+{_NAME}){{0,2}})\b")
TITLE_WORD = regex.compile(r"\b[A-Z][a-z]{2,}\b")
CAPWORD = regex.compile(rf"\s+(?:[A-Z]\.\s+)?({_NAME})\b")
NOT_NAMES = frozenset(_words(
    "The A An I It This That These Those He She They We You My Your Our Their His Her Its "
    "Please Thanks Thank Hello Hi Hey Dear Yes No Not Can Could Would Should Will Shall May "
    "Might Must Is Are Was Were Be Been Do Does Did Have Has Had And Or But If When Where Why "
    "How What Who Which Customer Patient Client Ticket Case Subject From To Cc Re Fwd Mr Mrs "
    "Ms Miss Dr Prof Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February "
    "March April June July August September October November December Street Road Avenue "
    "Account Owner User Assistant System Agent Nurse Doctor Note Summary Translate Write Draft "
    "Explain Classify Extract Summarise Summarize Rewrite Fix Given Validate Answer Email "
    "Phone Address Card Payment Refund Order Insurance Discharge Consult Device Beneficiary "
    "Emergency Chargeback Escalation Identity Contact New Hpi Bp Kyc Dl Ssn Iban Vpn Md Pt "
    "French English Spanish German Good Morning Afternoon Evening Name Remind Sorry Welcome "
    "Regards Best Cheers Okay Ok Sure Great Thanks "
    # organisation words: never a surname after a name ("Peruzzi Group")
    "Group Ltd Limited Inc Llc Gmbh Company Corp Corporation Partners Associates Holdings "
    "Bank University Hospital Clinic Foundation Trust Services Solutions Consulting Capital"))

USERNAME = regex.compile(
    r"(?i:\b(?:user\s?name|login|user\s?id|handle|screen\s?name)\s*(?:[:=]|is)\s*)"
    r"[\"'`]?(@?[A-Za-z0-9][A-Za-z0-9._-]{2,31})"
    r"|(?<![\w.@])@([A-Za-z0-9_]{3,30})\b")
AGE = regex.compile(
    r"\b(\d{1,3})[- ](?:years?|yrs?|y/?o)[- ]old\b|\b(\d{1,3})\s?(?:yo|y/o)\b"
    r"|\b(?i:aged?|age:)\s*(\d{1,3})\b|\b(\d{1,3})(?:M|F|[- ](?:year|yr)[- ]old)\b", regex.I)
ZIP = regex.compile(
    r"\b\d{5}-\d{4}\b"
    r"|(?<=\b(?:AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT"
    r"|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC|AA|AE|AP),?\s)"
    r"\d{5}\b"
    r"|(?<=\b(?i:zip|zip code|postal code|postcode)\s*:?\s*)\d{5}\b"
    r"|\b[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}\b")
LICENCE = regex.compile(
    r"(?<=(?i:driver'?s?\s+licen[cs]e|driving\s+licen[cs]e|\bDL|licen[cs]e)\s*(?:no\.?|number|#)?"
    r"\s*(?:is\s+|was\s+)?[:#]?\s*)"
    r"([A-Za-z]{0,2}\d[\d -]{4,16}\d|[A-Za-z]\d{3}-\d{4}-\d{4}"
    r"|(?=[A-Za-z]*\d)[A-Za-z0-9]{5,20})\b")
PHONE = regex.compile(
    r"(?<![\w+])(?:(?:\+|00)\d{1,3}[ .-]?|1[ .-])?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}"
    r"(?:\s*(?:x|ext\.?|extension)\s*\d{1,6})?\b"
    r"|(?<![\w+])(?:\+|00)\d{1,3}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){2,5}\d{2,4}\b"
    r"|(?<![\w+])\(?0\d{1,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}\b"
    # any 7+ digit number right after a phone cue ("tel.", "call", "ring me on", ...)
    r"|(?<=(?i:phone|tel|telephone|mobile|cell|call|ring|fax|contact|reach (?:me|us|her|him)"
    r")\.?:?\s*(?:(?i:me|us|her|him)\s+)?(?:(?i:on|at)\s+)?)"
    r"\(?\+?\d[\d().  -]{4,18}\d\b"
    r"|(?<![\w+.-])\d{3,4}[ .-]?\d{4}(?![\w.-])")  # local numbers: kept only near a cue


def _result(entity: str, start: int, end: int, score: float, name: str) -> Any:
    return RecognizerResult(entity_type=entity, start=start, end=end, score=score,
                            recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: name})


def _finditer(pattern: Any, text: str, timeout: float) -> list[Any]:
    try:
        return list(pattern.finditer(text, timeout=timeout))
    except TimeoutError as exc:
        raise AnalysisTimeoutError(f"pattern {pattern.pattern[:40]!r} timed out") from exc


class _Regexes(EntityRecognizer):
    """Base: regular expressions with a hard timeout that raises."""

    TIMEOUT_S = 2.0

    def __init__(self, entities: Sequence[str], name: str, timeout_s: float) -> None:
        super().__init__(supported_entities=list(entities), name=name, supported_language="en")
        self.label: str = name
        self.timeout_s = timeout_s

    def load(self) -> None:
        """Nothing to load."""

    def find(self, pattern: Any, text: str) -> list[Any]:
        """Matches of `pattern` in `text`, raising AnalysisTimeoutError past the limit."""
        return _finditer(pattern, text, self.timeout_s)


class ApplianceCatalogueRecognizer(_Regexes):
    """The `appliance.patterns` catalogue (secrets, passwords, cards, IBANs, ...)."""

    ENTITIES = ("SECRET", "PASSWORD", "EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN",
                "IP_ADDRESS", "PHONE_NUMBER")

    def __init__(self, timeout_s: float = 2.0) -> None:
        super().__init__(self.ENTITIES, "ApplianceCatalogueRecognizer", timeout_s)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        """Catalogue matches of the requested entities."""
        out = []
        for span in patterns.find(text):
            if span.entity not in entities:
                continue
            start = span.start
            if span.entity == "PASSWORD":  # keep the keyword, scrub the value
                head = regex.match(r"(?i)[a-z_ -]+\s*(?:[:=]|\bis\b)\s*[\"']?",
                                   text[span.start:span.end])
                start += head.end() if head else 0
            out.append(_result(span.entity, start, span.end, 0.9, self.label))
        return out


class AppliancePhoneRecognizer(_Regexes):
    """Phone numbers in North American and international formats (with extensions)."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        super().__init__(["PHONE_NUMBER"], "FastPhoneRecognizer", timeout_s)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        """Phone numbers with 9 to 15 digits."""
        out = []
        for m in self.find(PHONE, text):
            number = regex.split(r"(?i)x|ext", m.group())[0]
            digits = sum(c.isdigit() for c in number)
            cued = _cued(text, m.start())
            if (7 <= digits <= 16 and (digits >= 9 or m.group()[0] in "(+0" or cued)) or (
                    digits == 6 and cued):  # a six-digit local number after "call"
                out.append(_result("PHONE_NUMBER", m.start(), m.end(), 0.7, self.label))
        return out


_PHONE_CUE = regex.compile(r"(?i:phone|tel|mobile|cell|call|ring|fax|contact|reach)\W")


def _cued(text: str, start: int) -> bool:
    """True when a phone cue appears in the 60 characters before `start`."""
    return _PHONE_CUE.search(text, max(0, start - 60), start) is not None


class ApplianceAddressRecognizer(_Regexes):
    """Street addresses: number, street name and suffix, unit lines, PO boxes."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        super().__init__(["STREET_ADDRESS"], "StreetAddressRecognizer", timeout_s)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        """Street address spans."""
        return [_result("STREET_ADDRESS", m.start(), m.end(), 0.75, self.label)
                for m in self.find(ADDRESS, text)]


@lru_cache(maxsize=1)
def first_names() -> frozenset[str]:
    """Common given names (the US SSA/census-derived lists the Faker package ships)."""
    from faker.providers.person.en_US import Provider

    names = set(Provider.first_names) | set(Provider.first_names_female) | \
        set(Provider.first_names_male)
    return frozenset(n for n in names if len(n) > 2)


class ApplianceNameRecognizer(_Regexes):
    """Person names from honorific and role cues, and from a first-name gazetteer."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        super().__init__(["PERSON"], "NameCueRecognizer", timeout_s)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        """Cued names and gazetteer first names, each widened over a following surname."""
        out = []
        for m in self.find(CUED_NAME, text):
            words = m.group(1).split()
            while words and words[-1] in NOT_NAMES:
                words.pop()
            if words and words[0] not in NOT_NAMES:
                end = m.start(1) + len(" ".join(words))
                out.append(_result("PERSON", m.start(1), end, 0.6, self.label))
        gazetteer = first_names()
        for m in self.find(TITLE_WORD, text):
            if m.group() in gazetteer and m.group() not in NOT_NAMES:
                end = extend_name(text, m.end())
                out.append(_result("PERSON", m.start(), end, 0.5, self.label))
        return out


def extend_name(text: str, end: int) -> int:
    """Widen a name ending at `end` over one following capitalised word (a surname)."""
    follow = CAPWORD.match(text, end)
    if follow and follow.group(1) not in NOT_NAMES and "\n" not in text[end:follow.start(1)]:
        return int(follow.end(1))
    return end


class ApplianceUsernameRecognizer(_Regexes):
    """Usernames after a label (`username: x`) and @handles."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        super().__init__(["USERNAME"], "ApplianceUsernameRecognizer", timeout_s)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        """Username spans (the value only)."""
        out = []
        for m in self.find(USERNAME, text):
            group = 1 if m.group(1) else 2
            out.append(_result("USERNAME", m.start(group), m.end(group), 0.6, self.label))
        return out


class ApplianceSmallRecognizers(_Regexes):
    """Ages, ZIP codes and US driver licences (the last only next to a licence cue)."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        super().__init__(["AGE", "ZIP_CODE", "US_DRIVER_LICENSE"], "ApplianceSmallRecognizers",
                         timeout_s)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        """Age, ZIP and licence spans of the requested types."""
        out = []
        if "AGE" in entities:
            for m in self.find(AGE, text):
                group = next(i for i in range(1, 5) if m.group(i))
                out.append(_result("AGE", m.start(group), m.end(group), 0.6, self.label))
        if "ZIP_CODE" in entities:
            out += [_result("ZIP_CODE", m.start(), m.end(), 0.6, self.label)
                    for m in self.find(ZIP, text)]
        if "US_DRIVER_LICENSE" in entities:
            out += [_result("US_DRIVER_LICENSE", m.start(1), m.end(1), 0.7, self.label)
                    for m in self.find(LICENCE, text)]
        return out


def extra_recognizers(timeout_s: float) -> list[Any]:
    """Every recognizer this module adds, sharing one regex time limit."""
    return [ApplianceCatalogueRecognizer(timeout_s), AppliancePhoneRecognizer(timeout_s),
            ApplianceAddressRecognizer(timeout_s), ApplianceNameRecognizer(timeout_s),
            ApplianceUsernameRecognizer(timeout_s), ApplianceSmallRecognizers(timeout_s)]
