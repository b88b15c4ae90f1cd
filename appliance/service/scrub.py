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
from typing import Any, NotRequired, TypedDict, cast

from appliance import trust
from appliance.errors import DatasetFormatError, ScrubError, UsageError, VaultError
from appliance.home import Home
from appliance.passphrase import Passphrase, resolve
from appliance.policy import Policy, load_policy, policy_digest
from appliance.scrub.batch import Scrubbed
from appliance.vault.frames import digest_of

PSEUDONYM_KEY_INFO = b"appliance/scrub/pseudonym-key-wrap/v1"
"""The HKDF label of the master key's subkey that wraps a kept pseudonym key."""

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): stages "read", "scrub", "residual", "write"."""


class NerReport(TypedDict):
    """Whether names and places are detected (the policy's NER model installed or not)."""

    model: str | None
    detects_names_and_places: bool
    warning: NotRequired[str]


class ImportReport(TypedDict):
    """The scrub report of one import (`appliance dataset import --json`; also kept,
    encrypted, in the dataset's metadata)."""

    name: str
    shape: str | None
    records_in: int
    records_out: int
    train: int
    eval: int
    eval_only: bool
    rejected: int
    rejected_reasons: dict[str, int]
    rejected_lines: list[int]
    quarantined: int
    quarantined_reasons: dict[str, int]
    duplicates: int
    duplicates_exact: int
    duplicates_normalized: int
    pii: dict[str, int]
    residual: dict[str, int]
    residual_allowed: dict[str, int]
    residual_limits: dict[str, dict[str, Any]]
    scrubber_limits: dict[str, Any]
    residual_share_allowed: float
    digest: str
    ner: NerReport
    undetectable_entities: list[str]
    ignored_keys: list[str]
    pseudonym_key: str
    split_seed: int
    eval_fraction: float
    policy_digest: str
    canaries: NotRequired[dict[str, Any]]
    """The planted canaries' counts, when canaries were planted."""


class DetectionScore(TypedDict):
    """One engine's scores on a labeled file (docs/interface.md's `scrub eval` fields, plus
    the pooled direct identifiers)."""

    records: int
    records_per_s: float
    quarantined: int
    entities: dict[str, dict[str, float]]
    """Per entity type: `n` gold spans, the `masked`, `partial` and `leaked` shares."""
    over_redaction: float
    direct_identifiers: dict[str, float]


class BaselineScore(DetectionScore):
    """The baseline engine's scores on the same records in the same run."""

    name: str


class Evaluation(DetectionScore):
    """`appliance scrub eval --json`."""

    ner: NerReport
    baseline: NotRequired[BaselineScore]
    below_baseline: NotRequired[dict[str, dict[str, float]]]
    """The types where the appliance does worse than the baseline (with `--baseline`)."""


@dataclass
class PreparedDataset:
    """Scrubbed train and eval records, the report (docs/interface.md's fields and more), and the
    pseudonym key only when the policy keeps it."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    report: ImportReport
    pseudonym_key: bytes | None = field(default=None, repr=False)
    canaries: Any = field(default=None, repr=False)
    """The planted canary set (appliance.privacy.canaries.CanarySet), secrets included."""


def build_analyzer(policy: Policy, extra_recognizers: tuple[Any, ...] = ()) -> Any:
    """The scrub engine for `policy` (model located and digest-checked first)."""
    from appliance.scrub.engine import Analyzer
    from appliance.scrub.offline import require_model

    where = require_model(policy.pii.ner_model)
    return Analyzer(policy.pii, where.path, extra_recognizers)


def _ner_report(has_ner: bool, policy: Policy) -> NerReport:
    model = policy.pii.ner_model
    if has_ner:
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


def _engine(analyzer: Any) -> dict[str, Any]:
    """What an engine in this process can detect (the scrub job reports the same)."""
    return {"has_ner": analyzer.has_ner, "undetectable": analyzer.undetectable}


def in_sandbox(job: dict[str, Any], policy: Policy, *, where: str,
               progress: Progress | None = None, home: Home | None = None) -> dict[str, Any]:
    """Run scrub job `job` (appliance.scrub.job: the NER model located and digest-checked
    here first, ScrubError if refused) in the sandbox, which sees the model read-only and
    nothing else of the host; its result event. Tripwire reports go to `home`'s audit log;
    a failure of the job is its own error (same line, same exit code), else ScrubError."""
    from appliance.scrub.offline import require_model
    from appliance.train import isolation

    model = require_model(policy.pii.ner_model).path
    iso = isolation.require_isolation()
    job = {"kind": "scrub", "pii": policy.pii.model_dump(mode="json"),
           "model_path": str(model.absolute()) if model else None, **job}
    got: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []

    def handle(event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "tripwire" and home is not None:
            isolation.audit_tripwire(home, f"scrub:{where}", event)
        elif kind == "progress" and progress is not None:
            progress(str(event["stage"]), int(event["done"]), int(event["total"]))
        elif kind in ("scrubbed", "evaluated"):
            got.update(event)
        elif kind == "error":
            errors.append(event)
        elif kind == "signal":  # stopped from outside (this process is not its parent then)
            errors.append({"message": f"the scrubbing child was stopped by {event['signal']}"})

    spec = isolation.child_spec(read_only=(model.absolute(),) if model else (), gpu=False)
    result = isolation.run_isolated(job, handle, iso, spec=spec)
    if result.returncode != 0 or not got:
        raised = isolation.child_error(errors[-1] if errors else None)
        if raised is not None:
            raise raised
        why = errors[-1]["message"] if errors else \
            f"the scrubbing child exited with status {result.returncode}"
        raise ScrubError(f"scrubbing failed: {why}", where=where,
                         hint="nothing was imported; run again with --debug for details")
    return got


def _scrub(records: list[Any], policy: Policy, analyzer: Any, workers: int | None,
           tell: Progress, *, where: str,
           home: Home | None) -> tuple[Scrubbed, dict[str, Any], bytes | None]:
    """Scrub every record (in the sandbox's scrub job unless an engine of this process is
    given): (the result, what the engine detects, the pseudonym key if the policy keeps it)."""
    from appliance.scrub.batch import scrub_texts
    from appliance.scrub.operators import new_key

    texts = [list(r.texts()) for r in records]
    key = bytearray(new_key())
    try:
        if analyzer is not None:
            done = scrub_texts(texts, policy.pii, bytes(key), analyzer, workers=workers,
                               progress=lambda d, n: tell("scrub", d, n))
            engine = _engine(analyzer)
        else:
            event = in_sandbox({"mode": "import", "records": texts, "key": key.hex(),
                                "workers": workers}, policy, where=where, progress=tell,
                               home=home)
            done, engine = Scrubbed.from_dict(event), event["engine"]
        kept_key = bytes(key) if policy.pii.keep_pseudonym_key else None
    finally:
        key[:] = bytes(len(key))  # best effort: Python may hold other copies briefly
    return done, engine, kept_key


def _check_residual(path: Path, policy: Policy, scrubbed: Scrubbed, texts: int) -> None:
    """ScrubError when the residual pass (over every type it can detect, listed in the
    policy or not) found more than the policy's limits (absent: 0) in `texts` kept texts."""
    residual, dirty = scrubbed.residual, scrubbed.dirty
    over = {e: n for e, n in residual.items() if n > policy.pii.max_residual.get(e, 0)}
    share = dirty / texts if texts else 0.0
    if over or share > policy.pii.max_residual_share:
        detail = ", ".join(f"{e}: {n} (allowed {policy.pii.max_residual.get(e, 0)})"
                           for e, n in over.items()) or f"share of texts {share:.3f}"
        raise ScrubError(f"residual PII after scrubbing above the policy's limits: {detail}",
                         where=str(path), hint="nothing was imported; inspect the file, "
                         "or raise pii.max_residual for these types if they are expected")


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
                    columns: Any = None, home: Home | None = None,
                    eval_only: bool = False) -> PreparedDataset:
    """Read, validate, deduplicate, scrub and split the dataset at `path` under `policy`.
    With canaries (the argument, else `privacy.plant_canaries`), synthetic canaries are
    planted after deduplication and before scrubbing (docs/privacy.md). `eval_only` puts
    every record in the eval split (a sacred evaluation set: never planted, never trained on).

    Raises DatasetFormatError (bad file, or an invalid record when intake.on_invalid is
    abort) and ScrubError (residual PII above the policy's limits). Quarantined records are
    withheld, never passed through. The scrubbing runs in the sandbox (`in_sandbox`), unless
    an engine of this process is given as `analyzer` (tests and benchmarks that hold one);
    its tripwire reports go to `home`'s audit log (every passphrase file this process read is
    kept out of the sandbox)."""
    from appliance.intake.split import eval_indices
    from appliance.privacy.planting import maybe_plant
    from appliance.scrub.limits import scrubber_limits

    path = Path(path)
    tell = progress or (lambda *_: None)
    checked, unique, records_in = _read(path, policy, tell, columns)
    records, planting = maybe_plant(unique.records, policy.privacy,
                                    False if eval_only else canaries)
    scrubbed, engine, kept_key = _scrub(records, policy, analyzer, workers, tell,
                                        where=str(path), home=home)
    kept = [i for i in range(len(records)) if i not in scrubbed.quarantine]
    out_texts = sum(len(scrubbed.texts[i]) for i in kept)
    _check_residual(path, policy, scrubbed, out_texts)
    residual = scrubbed.residual
    tell("residual", out_texts, out_texts)
    if not kept:
        raise ScrubError("every record was quarantined", where=str(path))
    held_out = set(range(len(kept))) if eval_only else eval_indices(
        [unique.keys[i] for i in kept], policy.training.eval_fraction, policy.intake.split_seed)
    train: list[dict[str, Any]] = []
    eval_: list[dict[str, Any]] = []
    for pos, i in enumerate(kept):
        (eval_ if pos in held_out else train).append(records[i].with_texts(scrubbed.texts[i]))
    report: ImportReport = {
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
        "ner": _ner_report(bool(engine["has_ner"]), policy),
        "undetectable_entities": list(engine["undetectable"]),
        "ignored_keys": sorted(k[:40] for k in checked.ignored_keys)[:20],
        "pseudonym_key": "kept (encrypted)" if kept_key else "destroyed",
        "split_seed": policy.intake.split_seed,
        "eval_fraction": policy.training.eval_fraction,
        "policy_digest": policy_digest(policy),
    }
    canary_set, counts = planting.finish(
        {i for pos, i in enumerate(kept) if pos not in held_out}, scrubbed.texts)
    if counts:
        report["canaries"] = counts
    return PreparedDataset(train, eval_, report, kept_key, canary_set)


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
                   passphrase: Passphrase, progress: Progress | None = None,
                   workers: int | None = None, canaries: bool | None = None,
                   columns: str | None = None, eval_only: bool = False) -> ImportReport:
    """Prepare the dataset and write it encrypted into the vault; returns the report.
    `eval_only`: every record is held out and the vault marks the dataset so that training
    can never read it (a recipe's `eval.dataset`, the sacred evaluation set).

    Fails before any scrubbing when the vault is unavailable or the passphrase is wrong."""
    from appliance import audit
    from appliance.vault import store

    column_map = column_mapping(columns)  # a bad mapping is bad usage, before anything else
    if eval_only and canaries:
        raise UsageError("--canaries and --eval-only do not go together: canaries are "
                         "planted in training records, an eval-only dataset has none")
    trust.require_home(home)
    _refuse_existing(store, home, name)  # before the (long) scrub, not after it
    policy = load_policy(home.policy_file)
    master_key = trust.unlock(home, resolve(passphrase), policy)
    try:
        prepared = prepare_dataset(path, policy, name=name, progress=progress, workers=workers,
                                   canaries=canaries, columns=column_map, home=home,
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
                  analyzer: Any = None, baseline: str | None = None,
                  home: Home | None = None) -> Evaluation:
    """Score detection on a labeled presidio-research file (docs/interface.md's fields, plus pooled
    figures over the direct identifiers and the NER note). With `baseline="presidio"`, raw
    Presidio is scored on the same records in the same run under `baseline`, and the types
    the policy scrubs (and the direct identifiers) where the appliance does worse are listed
    under `below_baseline` (types it does not scrub, such as DATE_TIME, are not compared).
    The engines run in the sandbox (`in_sandbox`; tripwire reports to `home`'s audit log),
    unless an engine of this process is given as `analyzer` (then the baseline runs here)."""
    from appliance.policy.pii import DIRECT_IDENTIFIERS
    from appliance.scrub.evaluate import below, load_labeled, summary

    records = load_labeled(Path(path))
    if baseline is not None:
        from appliance.scrub.baseline import BASELINES

        if baseline not in BASELINES:
            raise ScrubError(f"unknown baseline {baseline!r}", where="--baseline",
                             hint=f"choose one of: {', '.join(BASELINES)}")
    if analyzer is not None:
        result, raw, engine = _evaluate_here(analyzer, records, policy, workers, baseline)
    else:
        event = in_sandbox({"mode": "evaluate", "workers": workers,
                            "baseline": baseline is not None,
                            "records": [[r.text, [[g.entity, g.start, g.end] for g in r.spans]]
                                        for r in records]},
                           policy, where=str(path), home=home)
        result, raw, engine = event["result"], event["baseline"], event["engine"]
    # the scorer's plain JSON (from this process or the sandboxed child), completed here
    out = cast(Evaluation, {**result, "direct_identifiers": summary(result, DIRECT_IDENTIFIERS),
                            "ner": _ner_report(bool(engine["has_ner"]), policy)})
    if raw is not None:
        out["baseline"] = cast(BaselineScore, {**raw, "name": baseline,
                                               "direct_identifiers": summary(
                                                   raw, DIRECT_IDENTIFIERS)})
        out["below_baseline"] = below(result, raw, [*DIRECT_IDENTIFIERS,
                                                    *policy.pii.entities])
    return out


def _evaluate_here(analyzer: Any, records: Any, policy: Policy, workers: int | None,
                   baseline: str | None) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """evaluate_file's scoring with an engine of this process."""
    from appliance.scrub.evaluate import evaluate, evaluate_serial

    result = evaluate(analyzer, records, workers=workers)
    raw = None
    if baseline is not None:
        from appliance.scrub.baseline import PresidioBaseline
        from appliance.scrub.offline import require_model

        raw = evaluate_serial(PresidioBaseline(require_model(policy.pii.ner_model).path),
                              records)
    return result, raw, _engine(analyzer)
