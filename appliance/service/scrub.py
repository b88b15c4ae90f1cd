"""Dataset preparation (validate, deduplicate, scrub, split) and scrub evaluation.

Shared by the CLI and the TUI: plain arguments in, plain data out, never prints. Nothing is
written to disk here except through `appliance.vault.store.write_dataset` at the very end
of `import_dataset`, which writes encrypted and atomically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import trust
from appliance.errors import DatasetFormatError, ScrubError, UsageError, VaultError
from appliance.home import Home
from appliance.policy import Policy, load_policy, policy_digest
from appliance.vault.frames import digest_of

PSEUDONYM_KEY_INFO = b"appliance/scrub/pseudonym-key-wrap/v1"
"""The HKDF label of the master key's subkey that wraps a kept pseudonym key."""

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): stages "read", "scrub", "residual", "write"."""


@dataclass
class PreparedDataset:
    """Scrubbed train and eval records, the report (docs/interface.md's fields and more), and the
    pseudonym key only when the policy keeps it."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    report: dict[str, Any]
    pseudonym_key: bytes | None = field(default=None, repr=False)
    canaries: Any = field(default=None, repr=False)
    """The planted canary set (appliance.privacy.canaries.CanarySet), secrets included."""


def build_analyzer(policy: Policy, extra_recognizers: tuple[Any, ...] = ()) -> Any:
    """The scrub engine for `policy` (model located and digest-checked first)."""
    from appliance.scrub.engine import Analyzer
    from appliance.scrub.offline import require_model

    where = require_model(policy.pii.ner_model)
    return Analyzer(policy.pii, where.path, extra_recognizers)


def _ner_report(analyzer: Any, policy: Policy) -> dict[str, Any]:
    model = policy.pii.ner_model
    if analyzer.has_ner:
        return {"model": model.name, "detects_names_and_places": True}
    return {"model": None, "detects_names_and_places": False,
            "warning": f"NER model {model.name} is not installed: names and places "
                       "(PERSON, LOCATION, NRP, ORGANIZATION) are NOT detected except by "
                       "cue patterns"}


def column_mapping(spec: str | None) -> Any:
    """The ShareGPT column mapping of `--columns` (None: the default); UsageError if bad."""
    from appliance.intake import sharegpt

    if spec is None:
        return sharegpt.DEFAULT
    try:
        return sharegpt.parse_columns(spec)
    except ValueError as exc:
        raise UsageError(str(exc), where="--columns") from None


def _read(path: Path, policy: Policy, tell: Progress,
          columns: Any = None) -> tuple[Any, Any, int]:
    """Read, validate and deduplicate: (validated, deduped, records_in)."""
    from appliance.intake.dedupe import dedupe
    from appliance.intake.formats import read_any, unit
    from appliance.intake.validate import validate

    intake = policy.intake
    kind, items = read_any(path, intake.max_record_bytes)
    if len(items) > intake.max_records:
        raise DatasetFormatError(f"{len(items)} records exceed the policy's limit of "
                                 f"{intake.max_records} (intake.max_records)", where=str(path))
    checked = validate(items, where=str(path), columns=columns or column_mapping(None))
    tell("read", len(items), len(items))
    if checked.rejected and intake.on_invalid == "abort":
        shown = "; ".join(f"{unit(kind)} {line}: {why}" for line, why in checked.rejected[:5])
        more = f" and {len(checked.rejected) - 5} more" if len(checked.rejected) > 5 else ""
        raise DatasetFormatError(f"{len(checked.rejected)} invalid record(s): {shown}{more}",
                                 where=str(path), hint="fix them, or set intake.on_invalid = "
                                 "\"drop\" to drop and count them")
    if not checked.records:
        raise DatasetFormatError("no valid record in the file", where=str(path))
    return checked, dedupe(checked.records, intake.deduplicate), len(items)


@dataclass
class _Scrubbed:
    texts: list[list[str]]
    quarantine: dict[int, str]
    pii: Counter[str]
    key: bytes | None


def _scrub(records: list[Any], policy: Policy, analyzer: Any, workers: int | None,
           tell: Progress) -> _Scrubbed:
    """Analyse every text of every record, quarantine failures, anonymise the rest."""
    from appliance.scrub.engine import analyze_all
    from appliance.scrub.operators import Anonymizer, merge, new_key

    flat = [(i, t) for i, r in enumerate(records) for t in r.texts()]
    outcomes = analyze_all(analyzer, [t for _, t in flat], workers=workers,
                           progress=lambda d, n: tell("scrub", d, n))
    quarantine: dict[int, str] = {}
    for (i, _), outcome in zip(flat, outcomes, strict=True):
        if outcome.quarantined is not None:
            quarantine.setdefault(i, outcome.quarantined)
    key = bytearray(new_key())
    try:
        anonymizer = Anonymizer(policy.pii, bytes(key))
        pii: Counter[str] = Counter()
        texts: list[list[str]] = [[] for _ in records]
        for (i, text), outcome in zip(flat, outcomes, strict=True):
            if i in quarantine:
                continue
            spans = merge(outcome.detections)
            pii.update(d.entity for d in spans)
            texts[i].append(anonymizer.apply(text, spans))
        kept_key = bytes(key) if policy.pii.keep_pseudonym_key else None
    finally:
        key[:] = bytes(len(key))  # best effort: Python may hold other copies briefly
    return _Scrubbed(texts, quarantine, pii, kept_key)


def _check_residual(path: Path, policy: Policy, texts: list[str]) -> dict[str, int]:
    """The independent residual pass over every type it can detect (listed in the policy or
    not); ScrubError above the policy's limits (absent: 0)."""
    from appliance.scrub.residual import ResidualPass

    residual, dirty = ResidualPass().count(texts)
    over = {e: n for e, n in residual.items() if n > policy.pii.max_residual.get(e, 0)}
    share = dirty / len(texts) if texts else 0.0
    if over or share > policy.pii.max_residual_share:
        detail = ", ".join(f"{e}: {n} (allowed {policy.pii.max_residual.get(e, 0)})"
                           for e, n in over.items()) or f"share of texts {share:.3f}"
        raise ScrubError(f"residual PII after scrubbing above the policy's limits: {detail}",
                         where=str(path), hint="nothing was imported; inspect the file, "
                         "or raise pii.max_residual for these types if they are expected")
    return residual


def residual_limits(residual: dict[str, int], policy: Policy) -> dict[str, dict[str, Any]]:
    """Per type the residual pass can detect: found, allowed, and whether the policy lists
    the type for scrubbing (a type it does not list is still looked for)."""
    from appliance.scrub.residual import detectable_types

    return {e: {"found": residual.get(e, 0), "allowed": policy.pii.max_residual.get(e, 0),
                "scrubbed_by_policy": e in policy.pii.entities}
            for e in sorted(set(detectable_types()) | set(residual))}


def prepare_dataset(path: str | Path, policy: Policy, *, name: str,
                    progress: Progress | None = None, workers: int | None = None,
                    analyzer: Any = None, canaries: bool | None = None,
                    columns: Any = None, eval_only: bool = False) -> PreparedDataset:
    """Read, validate, deduplicate, scrub and split the dataset at `path` under `policy`.
    With canaries (the argument, else `privacy.plant_canaries`), synthetic canaries are
    planted after deduplication and before scrubbing (docs/privacy.md). `eval_only` puts
    every record in the eval split (a sacred evaluation set: never planted, never trained on).

    Raises DatasetFormatError (bad file, or an invalid record when intake.on_invalid is
    abort) and ScrubError (residual PII above the policy's limits). Quarantined records are
    withheld, never passed through."""
    from appliance.intake.split import eval_indices
    from appliance.privacy.planting import maybe_plant
    from appliance.scrub.limits import scrubber_limits

    path = Path(path)
    tell = progress or (lambda *_: None)
    checked, unique, records_in = _read(path, policy, tell, columns)
    records, planting = maybe_plant(unique.records, policy.privacy,
                                    False if eval_only else canaries)
    analyzer = analyzer if analyzer is not None else build_analyzer(policy)
    scrubbed = _scrub(records, policy, analyzer, workers, tell)
    kept = [i for i in range(len(records)) if i not in scrubbed.quarantine]
    out_texts = [t for i in kept for t in scrubbed.texts[i]]
    residual = _check_residual(path, policy, out_texts)
    tell("residual", len(out_texts), len(out_texts))
    if not kept:
        raise ScrubError("every record was quarantined", where=str(path))
    held_out = set(range(len(kept))) if eval_only else eval_indices(
        [unique.keys[i] for i in kept], policy.training.eval_fraction, policy.intake.split_seed)
    train: list[dict[str, Any]] = []
    eval_: list[dict[str, Any]] = []
    for pos, i in enumerate(kept):
        (eval_ if pos in held_out else train).append(records[i].with_texts(scrubbed.texts[i]))
    report: dict[str, Any] = {
        "name": name,
        "shape": checked.shape,
        "records_in": records_in,
        "records_out": len(kept),
        "train": len(train),
        "eval": len(eval_),
        "eval_only": eval_only,
        "rejected": len(checked.rejected),
        "rejected_reasons": checked.reasons(),
        "rejected_lines": [line for line, _ in checked.rejected[:100]],
        "quarantined": len(scrubbed.quarantine),
        "quarantined_reasons": dict(Counter(scrubbed.quarantine.values())),
        "duplicates": unique.duplicates,
        "duplicates_exact": unique.exact,
        "duplicates_normalized": unique.normalized,
        "pii": dict(sorted(scrubbed.pii.items())),
        "residual": residual,
        "residual_allowed": dict(sorted(policy.pii.max_residual.items())),
        "residual_limits": residual_limits(residual, policy),
        "scrubber_limits": scrubber_limits(),
        "residual_share_allowed": policy.pii.max_residual_share,
        "digest": digest_of(train, eval_),  # the vault's definition: one digest everywhere
        "ner": _ner_report(analyzer, policy),
        "undetectable_entities": analyzer.undetectable,
        "ignored_keys": sorted(k[:40] for k in checked.ignored_keys)[:20],
        "pseudonym_key": "kept (encrypted)" if scrubbed.key else "destroyed",
        "split_seed": policy.intake.split_seed,
        "eval_fraction": policy.training.eval_fraction,
        "policy_digest": policy_digest(policy),
    }
    canary_set, counts = planting.finish(
        {i for pos, i in enumerate(kept) if pos not in held_out}, scrubbed.texts)
    report.update({"canaries": counts} if counts else {})
    return PreparedDataset(train, eval_, report, scrubbed.key, canary_set)


def wrap_pseudonym_key(master_key: bytes, name: str, key: bytes) -> str:
    """The pseudonym key sealed under the vault master key (`appliance.aead`, its own
    subkey, the dataset name as associated data), base64."""
    from appliance import aead

    return aead.seal_text(master_key, PSEUDONYM_KEY_INFO, key, name.encode("utf-8"))


def unwrap_pseudonym_key(master_key: bytes, name: str, wrapped: str) -> bytes:
    """Inverse of wrap_pseudonym_key; IntegrityError (opaque) if changed, moved or mis-keyed."""
    from appliance import aead

    return aead.unseal_text(master_key, PSEUDONYM_KEY_INFO, wrapped, name.encode("utf-8"),
                            what="the dataset's pseudonym key", where=f"dataset {name!r}")


def _refuse_existing(store: Any, home: Home, name: str) -> None:
    """Check the name and refuse one already in the vault (the vault re-checks on write)."""
    store.check_name(name)
    if store.dataset_path(home, name).exists():
        raise VaultError(f"a dataset named {name!r} already exists",
                         where=str(store.dataset_path(home, name)),
                         hint="choose another name or remove it with appliance dataset rm")


def import_dataset(home: Home, path: str | Path, name: str, *,
                   passphrase_file: str | None = None, progress: Progress | None = None,
                   workers: int | None = None, canaries: bool | None = None,
                   columns: str | None = None, eval_only: bool = False) -> dict[str, Any]:
    """Prepare the dataset and write it encrypted into the vault; returns the report.
    `eval_only`: every record is held out and the vault marks the dataset so that training
    can never read it (a recipe's `eval.dataset`, the sacred evaluation set).

    Fails before any scrubbing when the vault is unavailable or the passphrase is wrong."""
    from appliance import audit
    from appliance.passphrase import read_passphrase
    from appliance.vault import store

    column_map = column_mapping(columns)  # a bad mapping is bad usage, before anything else
    if eval_only and canaries:
        raise UsageError("--canaries and --eval-only do not go together: canaries are "
                         "planted in training records, an eval-only dataset has none")
    trust.require_home(home)
    _refuse_existing(store, home, name)  # before the (long) scrub, not after it
    policy = load_policy(home.policy_file)
    master_key = trust.unlock(home, read_passphrase(passphrase_file), policy)
    try:
        prepared = prepare_dataset(path, policy, name=name, progress=progress, workers=workers,
                                   canaries=canaries, columns=column_map,
                                   eval_only=eval_only)
    except (DatasetFormatError, ScrubError) as exc:
        audit.record(home, "dataset.import", outcome="refused", name=name,
                     reason=type(exc).__name__)
        raise
    metadata: dict[str, Any] = {"report": prepared.report}
    if eval_only:
        metadata[store.EVAL_ONLY_KEY] = True
    if prepared.pseudonym_key is not None:
        metadata["pseudonym_key_wrapped"] = wrap_pseudonym_key(master_key, name,
                                                               prepared.pseudonym_key)
    if prepared.canaries is not None:  # sealed: `dataset show` prints metadata
        from appliance.privacy.sealing import seal
        from appliance.service.privacy import SEALED_KEY

        metadata[SEALED_KEY] = seal(master_key, name, prepared.canaries)
    if progress:
        progress("write", 0, 1)
    store.write_dataset(home, policy, master_key, name, prepared.train, prepared.eval, metadata)
    report = prepared.report
    audit.record(home, "dataset.import", name=name, digest=report["digest"],
                 records_in=report["records_in"], records_out=report["records_out"],
                 rejected=report["rejected"], quarantined=report["quarantined"],
                 duplicates=report["duplicates"], pii=report["pii"],
                 residual=report["residual"], policy_digest=report["policy_digest"])
    if report.get("canaries"):
        counts = report["canaries"]
        audit.record(home, "privacy.canaries", name=name, planted=counts["planted"],
                     controls=counts["controls"], kinds=counts["kinds"],
                     surviving_scrub=counts["secrets_surviving_scrub"],
                     canary_set=counts["digest"])
    return report


def evaluate_file(path: str | Path, policy: Policy, *, workers: int | None = None,
                  analyzer: Any = None, baseline: str | None = None) -> dict[str, Any]:
    """Score detection on a labeled presidio-research file (docs/interface.md's fields, plus pooled
    figures over the direct identifiers and the NER note). With `baseline="presidio"`, raw
    Presidio is scored on the same records in the same run under `baseline`, and the types
    the policy scrubs (and the direct identifiers) where the appliance does worse are listed
    under `below_baseline` (types it does not scrub, such as DATE_TIME, are not compared)."""
    from appliance.policy.pii import DIRECT_IDENTIFIERS
    from appliance.scrub.evaluate import below, evaluate, evaluate_serial, load_labeled, summary

    records = load_labeled(Path(path))
    analyzer = analyzer if analyzer is not None else build_analyzer(policy)
    result = evaluate(analyzer, records, workers=workers)
    result["direct_identifiers"] = summary(result, DIRECT_IDENTIFIERS)
    result["ner"] = _ner_report(analyzer, policy)
    if baseline is not None:
        from appliance.scrub.baseline import BASELINES, PresidioBaseline
        from appliance.scrub.offline import require_model

        if baseline not in BASELINES:
            raise ScrubError(f"unknown baseline {baseline!r}", where="--baseline",
                             hint=f"choose one of: {', '.join(BASELINES)}")
        raw = evaluate_serial(PresidioBaseline(require_model(policy.pii.ner_model).path),
                              records)
        raw["name"] = baseline
        raw["direct_identifiers"] = summary(raw, DIRECT_IDENTIFIERS)
        result["baseline"] = raw
        result["below_baseline"] = below(result, raw, [*DIRECT_IDENTIFIERS,
                                                       *policy.pii.entities])
    return result
