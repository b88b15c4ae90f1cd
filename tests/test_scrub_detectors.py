"""The NER-independent detectors, the scorer's label mapping, the baseline and the residual
pass that looks for every type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import ScrubError
from appliance.policy import Policy, load_policy
from appliance.scrub import detectors
from appliance.scrub.engine import Analyzer, Detection, Outcome
from appliance.scrub.evaluate import GoldSpan, Labeled, below, score
from appliance.scrub.operators import merge
from appliance.service.scrub import build_analyzer, evaluate_file, prepare_dataset

REPO = Path(__file__).resolve().parents[1]


def _policy(**pii: Any) -> Policy:
    data = load_policy(REPO / "policy" / "default.toml").model_dump(mode="json")
    data["pii"].update(pii)
    return Policy.model_validate(data)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    """The real analyzer under the default policy."""
    return build_analyzer(_policy())  # type: ignore[no-any-return]


def _masked(analyzer: Analyzer, text: str, value: str) -> bool:
    """Every alphanumeric character of `value` in `text` is covered by a detection."""
    start = text.index(value)
    covered = bytearray(len(text))
    for d in merge(analyzer.analyze_batch([text])[0].detections):
        covered[d.start:d.end] = b"\1" * (d.end - d.start)
    return all(covered[i] for i in range(start, start + len(value)) if text[i].isalnum())


CASES = [
    ("digit_runs", "Please cancel card 4111 1111 1111 1112 today.", "4111 1111 1111 1112"),
    ("digit_runs", "Ring the office on 032 385 68 19 tomorrow.", "032 385 68 19"),
    ("addresses", "Ship it to:\nErik Larsen\nStorgata 17\n0155 Oslo\nNorway\n\nThanks",
     "Storgata 17\n0155 Oslo\nNorway"),
    ("addresses", "She lives at 12 Westbrook Avenue, Apt 4, Leeds LS6 2QT now.",
     "12 Westbrook Avenue, Apt 4, Leeds LS6 2QT"),
    ("uncommon_words", "Thank you Priyanka, the refund is on its way.", "Priyanka"),
    ("uncommon_words", "ok so zbigniew said he would call back", "zbigniew"),
    # a surname alone opening a sentence, though it is also an English word
    ("uncommon_words", "Hart denied all three charges.", "Hart"),
    ("uncommon_words", "King shall notify the Lender of any change of address.", "King"),
    # a town line ending in a postcode, and the street line above it
    ("addresses", "Thanks,\nIshaan Kapoor\nB-204, Lotus Residency\nSector 62, Noida 201301\n",
     "B-204, Lotus Residency\nSector 62, Noida 201301"),
    ("addresses", "Served by hand at ul. Marszałkowska 84/92 m. 15, 00-514 Warszawa.",
     "ul. Marszałkowska 84/92 m. 15, 00-514 Warszawa"),
    ("addresses", "Dr Imogen Hartley\nThe Old Rectory\nChurch Lane\nLittle Snoring\n"
     "Norfolk NR21 0AX\nTel: 01328 878 123", "The Old Rectory\nChurch Lane\nLittle Snoring"),
    # initials, and a given name that is also a word, before a detected surname
    ("propagate", "Dictated by Dr Paul Lambert, typed by S. Iqbal.", "S. Iqbal"),
    ("uncommon_words", "Please ship the order to:\nAugust Samuelsson\nStorgatan 4\n", "August"),
    ("propagate", "Please ship the order to:\nWill Samuelsson\nStorgatan 4\n", "Will"),
    # lower-case initials, a short syllable after a name, a name joined by "and" to a name
    ("propagate", "escalated by k. mensah, waiting on finance", "k. mensah"),
    ("propagate", "user chen na reports the export is empty", "chen na"),
    ("propagate", "yusuf and faisal both asked about the refund", "faisal"),
    # names by position: a modal-verb given name where no modal can stand, a given name
    # addressed at the start of a line, the value of a person-role field
    ("name_positions", "is will joining the standup or not", "will"),
    ("name_positions", "Will, could you send the deck before lunch?", "Will"),
    ("name_positions", "Next of kin: Le Van Hung (son)\nWard: 4B", "Le Van Hung"),
    ("name_positions", "Surname: Hope\nFirst names: Daniel", "Hope"),
    # a short name in a headline written in capitals; a known given name opening a
    # sentence with a capitalised surname after it, though both are English words
    ("uncommon_words", "BOXING - JOSHUA BEATS RUIZ IN RIYADH", "RUIZ"),
    ("uncommon_words", "Ivy Bell , the goalkeeper , was injured .", "Ivy Bell"),
    # a known name in a list; a name before an escaped quote (JSON-escaped chat)
    ("propagate", "They had 4: Jan, Kristi, Stephen and Nina.", "Jan"),
    ("uncommon_words", "jasmine:\\\"i\\'m lisa\\'s daughter\\\"", "lisa"),
    # an intersection; a street name in Greek capitals
    ("addresses", "meet me at the corner of Main and Elm tonight", "the corner of Main and Elm"),
    ("addresses", "Ship to 35 Σκαφίδια 5, Πάτρα", "35 Σκαφίδια 5"),
    ("addresses", "The stall is at Calle Mayor x Calle Arenal, Madrid.",
     "Calle Mayor x Calle Arenal"),
    # the value of an address field
    ("addresses", "Address: Kingsway Court, Hove\nPhone: none", "Kingsway Court, Hove"),
]


@pytest.mark.parametrize(("detector", "text", "value"), CASES)
def test_each_detector_masks_what_ner_alone_misses(analyzer: Analyzer, detector: str,
                                                    text: str, value: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A Luhn-failing card, a foreign phone, multi-line and unit addresses, a first name
    after a greeting and a lower-case name are fully masked; with that one detector
    switched off (test-only switch) the same value is not."""
    assert _masked(analyzer, text, value)
    monkeypatch.setattr(detectors, "DISABLED", {detector})
    assert not _masked(analyzer, text, value)


def test_ordinary_text_is_left_alone(analyzer: Analyzer) -> None:
    """Versions, times, digests, code and ordinary capitalised words are not detected; a
    sentence opening with a plural noun, a verb or a closing is not taken for a surname."""
    texts = ["Upgrade from version 2.3.1 to 2.4 before 10:30.",
             "Call foo_bar() in src/main.py with retries=3.",
             "The Committee approved the Budget on Tuesday.",
             "Residents said the road was closed.", "Discussed results with the team.",
             "Kind regards, and thanks again.", "I will send it tomorrow.",
             "we may or may not go", "Will you review it?", "Address: see above",
             "The Will of the deceased was read.", "Name: N/A",
             "I sat in the corner of the room and read."]
    for text, outcome in zip(texts, analyzer.analyze_batch(texts), strict=True):
        assert outcome.detections == [], text


def test_scorer_maps_other_label_sets() -> None:
    """Gold `ADDRESS`, `PER` and `PHONE` are scored as STREET_ADDRESS, PERSON, PHONE_NUMBER."""
    text = "Ann at 1 Main St, 555 0100"
    gold = Labeled(text, (GoldSpan("PER", 0, 3), GoldSpan("ADDRESS", 7, 16),
                          GoldSpan("PHONE", 18, 26)))
    result = score([gold], [Outcome([Detection("PERSON", 0, 3, 1.0)])])
    assert set(result["entities"]) == {"PERSON", "STREET_ADDRESS", "PHONE_NUMBER"}
    assert result["entities"]["PERSON"]["masked"] == 1.0
    assert result["entities"]["STREET_ADDRESS"]["leaked"] == 1.0


def test_below_names_the_types_worse_than_the_baseline() -> None:
    """A type that masks less or leaks more than the baseline is listed; others are not."""
    mine = {"entities": {"PERSON": {"masked": 0.9, "leaked": 0.05},
                         "US_SSN": {"masked": 1.0, "leaked": 0.0}}}
    theirs = {"entities": {"PERSON": {"masked": 0.95, "leaked": 0.02},
                           "US_SSN": {"masked": 1.0, "leaked": 0.0}}}
    assert set(below(mine, theirs)) == {"PERSON"}


def test_eval_with_presidio_baseline(tmp_path: Path, analyzer: Analyzer) -> None:
    """`baseline="presidio"` scores raw Presidio on the same records in the same run."""
    sample = json.loads((REPO / "tests" / "data" / "pii_shapes" / "signature.json")
                        .read_text())[:15]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(sample))
    result = evaluate_file(path, _policy(), analyzer=analyzer, workers=1, baseline="presidio")
    raw = result["baseline"]
    assert raw["name"] == "presidio" and raw["records"] == 15
    assert set(raw["entities"]) == set(result["entities"])
    assert isinstance(result["below_baseline"], dict)
    with pytest.raises(ScrubError):
        evaluate_file(path, _policy(), analyzer=analyzer, workers=1, baseline="nope")


def test_residual_looks_for_types_the_policy_does_not_list(tmp_path: Path) -> None:
    """A policy that drops CREDIT_CARD still has card numbers found by the residual pass:
    the import is refused, and allowed only through pii.max_residual."""
    entities = [e for e in _policy().pii.entities if e != "CREDIT_CARD"]
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"instruction": "My card is 4111 1111 1111 1111",
                                "output": "Noted"}) + "\n")
    policy = _policy(entities=entities)
    with pytest.raises(ScrubError) as info:
        prepare_dataset(path, policy, name="t", workers=1)
    assert "CREDIT_CARD: 1" in info.value.message
    allowed = _policy(entities=entities, max_residual={"CREDIT_CARD": 1},
                      max_residual_share=1.0)
    report = prepare_dataset(path, allowed, name="t", workers=1).report
    assert report["residual"] == {"CREDIT_CARD": 1}
    row = report["residual_limits"]["CREDIT_CARD"]
    assert row == {"found": 1, "allowed": 1, "scrubbed_by_policy": False}
    assert report["residual_limits"]["EMAIL_ADDRESS"]["scrubbed_by_policy"] is True
    assert report["scrubber_limits"]["can_miss"] and "%" in report["scrubber_limits"]["measured"]


SHAPE_FLOORS = {"multiline_address": 0.97, "signature": 0.98, "legal": 0.98,
                "clinical": 0.98, "chat_lower": 0.97}
"""Measured 2026-12-01 (docs/benchmarks.md) less about a point: a regression guard."""


@pytest.mark.parametrize("shape", sorted(SHAPE_FLOORS))
def test_dev_shapes_hold(analyzer: Analyzer, shape: str) -> None:
    """Each self-written dev shape keeps its measured direct-identifier masked share."""
    from appliance.policy.pii import DIRECT_IDENTIFIERS
    from appliance.scrub.evaluate import evaluate, load_labeled, summary

    records = load_labeled(REPO / "tests" / "data" / "pii_shapes" / f"{shape}.json")
    pooled = summary(evaluate(analyzer, records, workers=1), DIRECT_IDENTIFIERS)
    assert pooled["masked"] >= SHAPE_FLOORS[shape]


def test_surrogate_operator_is_realistic_consistent_and_keyed() -> None:
    """`surrogate` gives a person a fake name (same value, same fake; other key, other fake)
    and keeps the pseudonym for types a realistic fake would trip the residual pass on."""
    from appliance.scrub.operators import Anonymizer

    ops = {"PERSON": "surrogate", "PHONE_NUMBER": "surrogate"}
    pii = _policy(operators=ops).pii
    text = "Laura Smith called 415-555-0134; laura  smith again."
    spans = [Detection("PERSON", 0, 11, 1.0), Detection("PHONE_NUMBER", 19, 31, 1.0),
             Detection("PERSON", 33, 45, 1.0)]
    out = Anonymizer(pii, b"k" * 32).apply(text, spans)
    first, rest = out.split(" called ")
    assert "Laura" not in out and "555-0134" not in out and "<" not in first
    assert first == rest.split("; ")[1].removesuffix(" again.")  # one person, one fake
    assert rest.startswith("<PHONE_NUMBER_")
    assert Anonymizer(pii, b"j" * 32).apply(text, spans).split(" called ")[0] != first


@pytest.mark.parametrize("name", ["news", "legal", "clinical", "chat", "letters", "email",
                                  "tickets", "forms", "wire", "probe"])
def test_hand_written_prose_sets(analyzer: Analyzer, name: str) -> None:
    """The hand-written prose sets (real-world-style names of many origins, surnames alone,
    initials, lower case, addresses over several lines; tests/data/pii_prose/README.md):
    >= 97% of direct identifiers fully masked per set, at most one span leaked per set,
    over-redaction <= 25%. These are development sets: the figures are in
    docs/benchmarks.md."""
    result = evaluate_file(REPO / "tests" / "data" / "pii_prose" / f"{name}.json", _policy(),
                           analyzer=analyzer, workers=1)
    direct = result["direct_identifiers"]
    assert direct["masked"] >= 0.97, direct
    assert direct["leaked"] * direct["n"] <= 1.0 + 1e-9, direct
    assert result["over_redaction"] <= 0.25
