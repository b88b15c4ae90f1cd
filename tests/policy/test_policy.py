"""The declarative policy: strict schema, every problem at once, canonical digest."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from appliance.errors import PolicyError
from appliance.policy import load_policy, parse_policy_text, policy_digest, schema_text

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "policy").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_policies_load(path):
    """Every shipped policy file validates."""
    policy = load_policy(path)
    assert policy.meta.name == path.stem


def test_unknown_key_and_wrong_type_are_both_named():
    """An unknown key and a wrongly typed value are reported together by dotted key."""
    text = '[meta]\nname = "x"\n[storage]\ncolour = "red"\n[training.limits]\nmax_rank = "8"\n'
    with pytest.raises(PolicyError) as info:
        parse_policy_text(text, "p.toml")
    problems = info.value.problems
    assert any(p.startswith("p.toml: storage.colour: unknown key") for p in problems)
    assert any(p.startswith("p.toml: training.limits.max_rank: ") for p in problems)
    assert len(problems) == 2


def test_values_are_not_coerced():
    """Strict types: a float for an int, a string for a bool are refused."""
    text = ('[meta]\nname = "x"\n[training.limits]\nmax_epochs = 2.0\n'
            '[pii]\nkeep_pseudonym_key = "yes"\n')
    with pytest.raises(PolicyError) as info:
        parse_policy_text(text, "p.toml")
    keys = {p.split(": ")[1] for p in info.value.problems}
    assert keys == {"training.limits.max_epochs", "pii.keep_pseudonym_key"}


def test_security_switches_cannot_be_turned_off():
    """Plaintext on disk, remote code and an optional eval split cannot be enabled."""
    text = ('[meta]\nname = "x"\n[storage]\nplaintext_on_disk = true\n'
            '[models]\ntrust_remote_code = true\n[training]\nrequire_eval_split = false\n'
            '[network]\ntraining = "allow"\n')
    with pytest.raises(PolicyError) as info:
        parse_policy_text(text, "p.toml")
    keys = {p.split(": ")[1] for p in info.value.problems}
    assert keys == {"storage.plaintext_on_disk", "models.trust_remote_code",
                    "training.require_eval_split", "network.training"}


def test_cross_field_rules_are_checked():
    """Unknown entity types, operators for unlisted entities and KDF above caps are named."""
    text = ('[meta]\nname = "x"\n[pii]\nentities = ["PERSON", "SHOE_SIZE"]\n'
            '[pii.operators]\nEMAIL_ADDRESS = "mask"\n'
            '[storage.argon2id]\nmemory_kib = 2000000\n')
    with pytest.raises(PolicyError) as info:
        parse_policy_text(text, "p.toml")
    keys = {p.split(": ")[1] for p in info.value.problems}
    assert keys == {"pii.entities.1", "pii.operators.EMAIL_ADDRESS", "storage.argon2id.memory_kib"}


def test_missing_meta_is_reported():
    """A policy without [meta] names the missing key."""
    with pytest.raises(PolicyError) as info:
        parse_policy_text("[pii]\nscore_threshold = 0.5\n", "p.toml")
    assert info.value.problems == ["p.toml: meta: required key is missing"]


def test_toml_syntax_error_is_one_problem():
    """Malformed TOML is reported with its line."""
    with pytest.raises(PolicyError) as info:
        parse_policy_text('[meta\nname = "x"\n', "p.toml")
    assert len(info.value.problems) == 1
    assert "line 1" in info.value.problems[0]


def test_digest_ignores_comments_order_whitespace_and_explicit_defaults():
    """Comments, key order, white space and spelled-out defaults do not change the digest."""
    a = '[meta]\nname = "x"\n[pii]\nscore_threshold = 0.5\n[audit]\ncheckpoint_interval = 10\n'
    b = ('# comment\n[audit]\n  checkpoint_interval=10   # every ten\n\n[meta]\nname="x"\n'
         'schema_version = 1\n[pii]\nscore_threshold=0.5\nkeep_pseudonym_key = false\n')
    assert policy_digest(parse_policy_text(a)) == policy_digest(parse_policy_text(b))


def test_digest_changes_with_any_value():
    """A changed value changes the digest."""
    a = '[meta]\nname = "x"\n[pii]\nscore_threshold = 0.5\n'
    b = '[meta]\nname = "x"\n[pii]\nscore_threshold = 0.6\n'
    assert policy_digest(parse_policy_text(a)) != policy_digest(parse_policy_text(b))


def test_committed_schema_is_in_sync():
    """docs/policy.schema.json equals what `appliance policy schema` prints."""
    committed = (REPO / "docs" / "policy.schema.json").read_text()
    hint = "regenerate: appliance policy schema > docs/policy.schema.json"
    assert committed == schema_text(), hint


def test_every_schema_field_is_documented():
    """Every property in the JSON Schema carries a description."""
    schema = json.loads(schema_text())
    missing = []
    for name, definition in [("Policy", schema), *schema.get("$defs", {}).items()]:
        for field, prop in definition.get("properties", {}).items():
            if "description" not in prop:
                missing.append(f"{name}.{field}")
    assert not missing


def test_default_policy_lists_every_key():
    """policy/default.toml spells out every top-level section and field (nothing implicit)."""
    import tomllib

    data = tomllib.loads((REPO / "policy" / "default.toml").read_text())
    policy = load_policy(REPO / "policy" / "default.toml")
    dumped = policy.model_dump()
    for section, fields in dumped.items():
        assert section in data, section
        if isinstance(fields, dict):
            for field in fields:
                if field in ("max_exposure_bits", "canary_seed"):
                    continue  # unset has a meaning; shown commented in the file
                assert field in data[section], f"{section}.{field}"


def test_a_key_a_later_version_adds_with_a_default_leaves_the_digest():
    """Upgrades that add a policy key with a default do not change an existing file's
    digest (so they do not make every home refuse its own policy as hand-edited)."""
    from appliance.policy import Policy

    class LaterPolicy(Policy):  # the same model with one more key, as a later version
        added_later: int = 3

    text = (REPO / "policy" / "default.toml").read_text()
    data = tomllib.loads(text)
    assert policy_digest(LaterPolicy.model_validate(data)) == policy_digest(
        parse_policy_text(text))
    assert policy_digest(LaterPolicy.model_validate({**data, "added_later": 4})) != \
        policy_digest(parse_policy_text(text))
