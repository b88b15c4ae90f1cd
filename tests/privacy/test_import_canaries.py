"""Canaries planted at import: before the real scrubber, sealed into the vault, counted in
the report without a single secret leaving in the clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance import trust
from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.resources import shipped_policy
from tests.privacy.control import base_records
from tests.train.conftest import PASSPHRASE, make_home

PRIVACY = """[privacy]
plant_canaries = true
canary_seed = 11
canary_repeats = [1, 4]
canary_kinds = ["ssn", "email", "name", "card"]
canary_controls = 2

"""


def _policy_text() -> str:
    demo = shipped_policy("demo").read_text()
    return demo[:demo.index("[privacy]")] + PRIVACY + demo[demo.index("[export]"):]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, dict, Path]:  # type: ignore[type-arg]
    """A home with one dataset imported with canaries through the real scrubber."""
    from appliance.service.scrub import import_dataset

    root = tmp_path_factory.mktemp("canary-import")
    home = make_home(root / "home", _policy_text())
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in base_records(30)))
    pass_file = root / "pass"
    pass_file.write_text(PASSPHRASE)
    report = import_dataset(home, data, "ds", passphrase=read_passphrase(pass_file), workers=1)
    return home, report, pass_file


def _canaries(home: Home):  # type: ignore[no-untyped-def]
    from appliance.policy import load_policy
    from appliance.service.privacy import load_canaries

    policy = load_policy(home.policy_file)
    key = trust.unlock(home, PASSPHRASE.strip().encode(), policy)
    return load_canaries(home, key, "ds"), policy, key


def test_import_reports_canary_counts_and_no_secret(imported):
    """The report counts planted canaries and controls; no secret appears in it."""
    home, report, _ = imported
    cset, _, _ = _canaries(home)
    counts = report["canaries"]
    assert counts["planted"] == 8 and counts["controls"] == 8
    assert counts["digest"] == cset.digest()
    text = json.dumps(report)
    assert all(c.secret not in text for c in cset.canaries)


def test_planted_canaries_pass_through_the_scrubber(imported):
    """Carrier sentences are in the stored records as often as planted (train + eval), and
    the secrets are scrubbed out of them: the report's survivor count matches."""
    from appliance.vault.store import read_dataset

    home, report, _ = imported
    cset, _, key = _canaries(home)
    records = read_dataset(home, key, "ds", "all")
    texts = [m["content"] for r in records for m in r["messages"]]
    survivors = sum(1 for c in cset.canaries if c.repeats
                    and any(c.secret in t for t in texts))
    assert report["canaries"]["secrets_surviving_scrub"] == survivors
    for canary in cset.canaries:
        carriers = sum(t.count(canary.prefix) for t in texts)
        assert carriers >= canary.repeats
        if canary.repeats:
            assert 0 <= cset.train_repeats[canary.id] <= canary.repeats
    assert survivors <= 1, "the scrubber let planted canary secrets through"


def test_dataset_show_and_the_audit_log_hold_no_canary_secret(imported):
    """`dataset show` prints metadata: the canary set is sealed there; the audit log has
    only counts and the digest."""
    from appliance.service.datasets import show_dataset

    home, _, pass_file = imported
    cset, _, _ = _canaries(home)
    shown = json.dumps(show_dataset(home, "ds", passphrase=read_passphrase(pass_file)))
    log = home.audit_log.read_text()
    for canary in cset.canaries:
        assert canary.secret not in shown and canary.secret not in log
    assert '"privacy.canaries"' in log or "privacy.canaries" in log


def test_training_refuses_early_when_the_dataset_has_no_canaries(tmp_path):
    """Policy asks for the check, dataset has no canaries: PolicyViolation before training."""
    from appliance.errors import PolicyViolation
    from appliance.policy import load_policy
    from appliance.service.privacy import canaries_for_training
    from appliance.vault.store import write_dataset

    text = _policy_text().replace("plant_canaries = true", "check_before_signing = true")
    home = make_home(tmp_path / "home", text)
    policy = load_policy(home.policy_file)
    key = trust.unlock(home, PASSPHRASE.strip().encode(), policy)
    write_dataset(home, policy, key, "plain", base_records(4), base_records(1), {})
    with pytest.raises(PolicyViolation, match="without canaries"):
        canaries_for_training(home, policy, key, "plain")
    off = load_policy(home.policy_file).model_copy(
        update={"privacy": policy.privacy.model_copy(update={"check_before_signing": False})})
    assert canaries_for_training(home, off, key, "plain") is None
