"""The privacy check for the CLI, the TUI and training: canary exposure of an adapter.

The canary set comes sealed from the dataset's encrypted metadata in the vault; the
measurement runs in the network-isolated child (appliance.train.isolation, the same child
and tripwire as training), which gets the canaries over stdin and sends numbers back. What
leaves this module (results, audit events, provenance) holds ids, counts and exposures,
never a canary secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance import audit, trust
from appliance.errors import (
    ApplianceError,
    IntegrityError,
    PolicyViolation,
    SigningError,
    TrainingError,
    VaultError,
)
from appliance.fsutil import atomic_write_text
from appliance.home import Home
from appliance.passphrase import Passphrase, resolve
from appliance.policy import Policy, load_policy
from appliance.privacy.canaries import CanarySet
from appliance.privacy.check import ExposureSummary

Event = dict[str, Any]
LIMITS = (
    "a pass means no evidence of memorisation at this sample size, not proof of absence",
    "exposure saturates at log2(candidates + 1) bits: it detects a preference for the "
    "secret, not full memorisation (the extraction attempt covers that end)",
    "one memorised canary among many is usually not detected by the tests",
    "each canary is measured in one carrier sentence and context; paraphrases are not",
    "canaries are synthetic: how the scrubber treats them is the import report's "
    "'surviving scrubbing' count",
)
"""What the exposure test cannot show (docs/privacy.md, "What the test can and cannot
show"), for reports and the console."""
SEALED_KEY = "canaries_sealed"
"""Where the sealed canary set sits in a dataset's encrypted metadata."""


class PrivacyResult(ExposureSummary):
    """A privacy check (`privacy.json` of a run, the report's and provenance's `privacy`): the
    exposure test plus the canary set it measured, timings and the isolation it ran in."""

    canary_set: dict[str, Any]
    timing_s: dict[str, float]
    isolation: str


class ArtifactPrivacy(PrivacyResult):
    """`appliance privacy-check ARTIFACT --json`: the check plus the measured artifact."""

    artifact: dict[str, Any]


def load_canaries(home: Home, master_key: bytes, dataset: str) -> CanarySet | None:
    """The dataset's canary set (None when it was imported without canaries)."""
    from appliance.privacy.sealing import unseal
    from appliance.vault.store import read_metadata

    metadata = read_metadata(home, master_key, dataset).get("metadata") or {}
    sealed = metadata.get(SEALED_KEY)
    return unseal(master_key, dataset, sealed) if isinstance(sealed, str) else None


def canaries_for_training(home: Home, policy: Policy, master_key: bytes,
                          dataset: str, *, force: bool = False) -> CanarySet | None:
    """When the policy checks before signing (or `force`): the dataset's canaries, or
    PolicyViolation before any training starts if it has none. None when the check is off."""
    if not (policy.privacy.check_before_signing or force):
        return None
    canaries = load_canaries(home, master_key, dataset)
    if canaries is None:
        raise PolicyViolation(f"the policy checks canary exposure before signing, but "
                              f"dataset {dataset!r} was imported without canaries",
                              where="policy privacy.check_before_signing",
                              hint="re-import it with appliance dataset import --canaries "
                                   "(or privacy.plant_canaries = true)")
    return canaries


def measure_adapter(home: Home, policy: Policy, *, model_dir: Path, adapter_dir: Path,
                    recipe: dict[str, Any], canaries: CanarySet, label: str,
                    on_event: Callable[[Event], None] | None = None) -> PrivacyResult:
    """Run the exposure test on `adapter_dir` over `model_dir` in the isolated child and
    summarize it under the policy's alpha and threshold."""
    from appliance.privacy.check import CanaryResult, summarize
    from appliance.train import isolation

    iso = isolation.require_isolation()
    quant = recipe.get("quantization") or {}
    job = {"privacy": True, "model_dir": str(model_dir.absolute()),
           "adapter_dir": str(adapter_dir.absolute()),
           "method": recipe.get("method", "qlora"),
           "compute_dtype": quant.get("compute_dtype", "float32"),
           "double_quant": quant.get("double_quant", True),
           "threads": recipe.get("threads", 0), "canaries": canaries.as_dict(),
           "candidates": policy.privacy.candidates}
    collected: dict[str, Any] = {"errors": []}

    def handle(event: Event) -> None:
        kind = event.get("type")
        if kind == "tripwire":
            isolation.audit_tripwire(home, label, event)
        elif kind == "privacy_measured":
            collected["measured"] = event
        elif kind == "error":
            collected["errors"].append(event)
        if on_event is not None and kind != "privacy_measured":
            on_event(event)

    started = time.monotonic()
    spec = isolation.child_spec(read_only=(model_dir, adapter_dir))
    result = isolation.run_isolated(job, handle, iso, spec=spec)
    if result.returncode != 0 or "measured" not in collected:
        why = collected["errors"][-1]["message"] if collected["errors"] else \
            f"the measuring child exited with status {result.returncode}"
        audit.record(home, "privacy.check", outcome="failed", label=label,
                     error=collected["errors"][-1]["kind"] if collected["errors"] else "exit")
        raise TrainingError(f"the privacy check could not run: {why}", where=label,
                            hint="run again with --debug to see the child's output")
    measured = collected["measured"]
    results = [CanaryResult(**r) for r in measured["results"]]
    summary = summarize(results, candidates=policy.privacy.candidates,
                        alpha=policy.privacy.alpha,
                        max_exposure_bits=policy.privacy.max_exposure_bits)
    return {**summary, "canary_set": canaries.summary(),
            "timing_s": {"load": measured["load_s"], "measure": measured["measure_s"],
                         "total": time.monotonic() - started},
            "isolation": iso.detail}


def _short(value: Any) -> Any:
    """Floats rounded to 4 significant digits: long digit runs would look like card numbers
    to the audit log's redaction (and more precision says nothing)."""
    return float(f"{value:.4g}") if isinstance(value, float) else value


def audit_fields(summary: PrivacyResult) -> dict[str, Any]:
    """The numbers of a result that go into the audit event."""
    fields = {"verdict": summary["verdict"], "p_value": summary["test"]["p_value"],
              "p_value_top_repeats": summary["test_top_repeats"]["p_value"],
              "mean_planted_bits": summary["groups"]["planted"]["mean"],
              "max_planted_bits": summary["groups"]["planted"]["max"],
              "mean_control_bits": summary["groups"]["controls"]["mean"],
              "extraction_hits": summary["extraction"]["hits"],
              "candidates": summary["candidates"],
              "canary_set": summary["canary_set"]["digest"]}
    return {k: _short(v) for k, v in fields.items()}


def before_signing(home: Home, policy: Policy, canaries: CanarySet, *, adapter_dir: Path,
                   run_dir: Path, model_dir: Path, recipe: dict[str, Any], run_id: str,
                   on_event: Callable[[Event], None] | None = None) -> PrivacyResult:
    """The check training runs on the fresh adapter, before the artifact is assembled and
    signed. Writes the result to `run_dir/privacy.json` and returns it for the report and
    the provenance; when it fails and the policy enforces it, raises PolicyViolation, so
    nothing is signed."""
    summary = measure_adapter(home, policy, model_dir=model_dir, adapter_dir=adapter_dir,
                              recipe=recipe, canaries=canaries, label=f"run {run_id}",
                              on_event=on_event)
    atomic_write_text(run_dir / "privacy.json", json.dumps(summary, indent=2,
                                                           sort_keys=True))
    failed = summary["verdict"] == "fail"
    audit.record(home, "privacy.check", outcome="failed" if failed else "ok", run_id=run_id,
                 stage="before-signing", enforced=policy.privacy.enforce,
                 **audit_fields(summary))
    if failed and policy.privacy.enforce:
        raise PolicyViolation("the privacy check failed, so the adapter was not signed: "
                              + "; ".join(summary["reasons"]), where=f"run {run_id}",
                              hint=f"the numbers are in {run_dir / 'privacy.json'}; "
                                   "docs/privacy.md explains the test")
    return summary


def _model_dir(home: Home, base: dict[str, Any]) -> Path:
    from appliance.models import store

    record = store.read_record(home, str(base.get("name")))
    recorded = base.get("digest") or base.get("root_digest")
    if recorded != record.root_digest:
        raise IntegrityError("the base model in the home is not the one the adapter was "
                             "trained on", where=str(record.path))
    store.verify_weights(record)
    return record.weights_dir


def _check_dataset(home: Home, master_key: bytes, prov: dict[str, Any],
                   canaries: CanarySet) -> None:
    """The dataset in the vault is the one the adapter was trained on."""
    recorded = (prov.get("privacy") or {}).get("canary_set", {}).get("digest")
    if recorded is not None:
        if recorded != canaries.digest():
            raise IntegrityError("the dataset's canary set is not the one the adapter was "
                                 "checked with", where=f"dataset {prov['dataset']['name']!r}")
        return
    from appliance.vault.frames import digest_of
    from appliance.vault.store import read_dataset

    name = prov["dataset"]["name"]
    digest = digest_of(read_dataset(home, master_key, name, "train", purpose="privacy-check"),
                       read_dataset(home, master_key, name, "eval", purpose="privacy-check"))
    if digest != prov["dataset"].get("digest"):
        raise IntegrityError("the dataset changed since the adapter was trained",
                             where=f"dataset {name!r}")


def check_artifact(home: Home, artifact: str | Path, *, passphrase: Passphrase,
                   on_event: Callable[[Event], None] | None = None) -> ArtifactPrivacy:
    """`appliance privacy-check ARTIFACT`: verify the artifact's signature (before any
    parser opens a file), find its base model and dataset from the signed provenance, and
    measure the dataset's canaries on its adapter."""
    from appliance.service.artifacts import verified_copy

    trust.require_home(home)
    policy = load_policy(home.policy_file)
    path = Path(artifact)
    with verified_copy(home, path) as (copy, verified):  # measure only the verified copy
        if not verified["ok"]:
            audit.record(home, "privacy.check", outcome="refused", artifact=path.name,
                         reason="signature")
            raise SigningError(f"the artifact does not verify: {verified['reason']}",
                               where=str(path),
                               hint="only signed, unmodified artifacts are measured")
        try:
            summary, prov = _measure_artifact(home, policy, copy, passphrase, on_event)
        except ApplianceError as exc:
            audit.record(home, "privacy.check", outcome="refused", artifact=path.name,
                         stage="artifact", error=type(exc).__name__)
            raise
    result: ArtifactPrivacy = {
        **summary,
        "artifact": {"path": str(path), "root_digest": verified["root_digest"],
                     "run_id": prov.get("run_id"), "dataset": prov["dataset"]["name"],
                     "recorded_verdict": (prov.get("privacy") or {}).get("verdict")}}
    audit.record(home, "privacy.check", outcome="failed" if result["verdict"] == "fail"
                 else "ok", artifact=path.name, root_digest=verified["root_digest"],
                 stage="artifact", **audit_fields(result))
    return result


def _measure_artifact(home: Home, policy: Policy, path: Path, passphrase: Passphrase,
                      on_event: Callable[[Event], None] | None,
                      ) -> tuple[PrivacyResult, dict[str, Any]]:
    """Find the base model and the canaries of a verified artifact and measure them."""
    try:
        prov = json.loads((path / "provenance.json").read_text("utf-8"))
        dataset = str(prov["dataset"]["name"])
        base = dict(prov["base_model"])
        recipe = dict(prov["recipe"])
    except (OSError, ValueError, KeyError, TypeError):
        raise SigningError("the artifact has no usable training provenance",
                           where=str(path)) from None
    model_dir = _model_dir(home, base)
    master_key = trust.unlock(home, resolve(passphrase), policy)
    canaries = load_canaries(home, master_key, dataset)
    if canaries is None:
        raise VaultError(f"dataset {dataset!r} was imported without canaries, so there is "
                         "nothing to measure", where=str(path),
                         hint="import with --canaries (or privacy.plant_canaries) and train")
    _check_dataset(home, master_key, prov, canaries)
    summary = measure_adapter(home, policy, model_dir=model_dir, adapter_dir=path,
                              recipe=recipe, canaries=canaries, label=f"artifact {path.name}",
                              on_event=on_event)
    return summary, prov
