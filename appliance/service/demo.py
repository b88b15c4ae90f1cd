"""The embedded demo: the whole pipeline on shipped synthetic data and the default model.

init -> model import (default) -> dataset import (canaries planted, scrub, vault) -> QLoRA
training in the isolated child (held-out loss before, during and after; the evaluation
gates; the canary exposure check; sign) -> verify -> two sample answers, base model against
the adapter. Each stage reports through
`on_stage`; the result carries the fields docs/interface.md promises (artifact,
eval_loss_before, eval_loss_after, verified). A rerun on the same workspace reuses the
home, model and dataset and trains again.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from appliance.errors import TrainingError
from appliance.fsutil import atomic_write_text
from appliance.home import HOME_ENV, Home, default_home_dir
from appliance.passphrase import Passphrase, resolve
from appliance.resources import PACKAGE_DIR, shipped_policy

if TYPE_CHECKING:
    from appliance.service.generate import Answer

DEMO_DIR = PACKAGE_DIR / "data" / "demo"
DATASET = DEMO_DIR / "dataset.jsonl"
RECIPE = DEMO_DIR / "recipe.toml"
PROMPTS = DEMO_DIR / "prompts.jsonl"
DATASET_NAME = "demo"
PASSPHRASE_NAME = "demo.passphrase"  # noqa: S105 (a file name)

Stage = Callable[[str, str], None]


def demo_home(arg: str | None) -> Home:
    """`--home`, else `$APPLIANCE_HOME`, else a `demo` workspace beside the default home (so
    the demo never touches an operator's real home)."""
    if arg:
        return Home(Path(arg).expanduser().absolute())
    if os.environ.get(HOME_ENV):
        return Home(Path(os.environ[HOME_ENV]).expanduser().absolute())
    return Home(default_home_dir().parent / "appliance-demo")


def demo_passphrase_file(home: Home, given: str | None) -> str:
    """The passphrase file: the operator's, else a random one the demo keeps in its own
    workspace. Storing a passphrase beside the keys it seals is for synthetic demo data
    only; a real home gets its passphrase from a prompt or the operator's own file."""
    if given or os.environ.get("APPLIANCE_PASSPHRASE_FILE"):
        return str(given or os.environ["APPLIANCE_PASSPHRASE_FILE"])
    path = home.root / PASSPHRASE_NAME
    if not path.exists():
        home.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_text(path, secrets.token_urlsafe(24) + "\n", 0o600)
    return str(path)


def _init(home: Home, passphrase: Passphrase, stage: Stage) -> None:
    from appliance.service.home import init_home

    if home.is_initialised():
        stage("init", f"reusing the initialised home {home.root}")
        return
    stray = [p for p in home.root.iterdir() if p.name != PASSPHRASE_NAME] \
        if home.root.is_dir() else []
    if stray:
        init_home(home, b"", None)  # refuses a non-empty, uninitialised home with its reason
    secret = resolve(passphrase)  # before the file moves: it may be the demo's own file
    keep = home.root / PASSPHRASE_NAME
    held = keep.read_bytes() if keep.exists() else None
    if held is not None:
        keep.unlink()  # init wants an empty directory; the file goes back right after
    try:
        result = init_home(home, secret, shipped_policy("demo"))
    finally:
        if held is not None:
            atomic_write_text(keep, held.decode(), 0o600)
    stage("init", f"home created under policy {result['policy_name']} "
                   f"({result['policy_digest']})")


def _model(home: Home, passphrase: Passphrase, stage: Stage) -> None:
    from appliance.service.models import import_model

    info = import_model(home, None, None, default=True,
                        passphrase=resolve(passphrase))
    how = "already imported" if info.get("cached") else "converted from GGUF to safetensors"
    stage("model", f"{info['name']} {how}; allowed by policy: {info['allowed']}")


def _dataset(home: Home, passphrase: Passphrase, stage: Stage) -> None:
    from appliance.service.datasets import list_datasets
    from appliance.service.scrub import import_dataset

    if any(d["name"] == DATASET_NAME for d in list_datasets(home)):
        stage("dataset", f"reusing the scrubbed, encrypted dataset {DATASET_NAME!r}")
        return
    report = import_dataset(home, DATASET, DATASET_NAME, passphrase=passphrase,
                            canaries=True)  # the privacy check before signing needs them
    pii = sum(report["pii"].values())
    stage("dataset", f"{report['records_out']} of {report['records_in']} records kept "
          f"({report['rejected']} rejected, {report['duplicates']} duplicates, "
          f"{report['quarantined']} quarantined); {pii} PII spans replaced; residual "
          f"{report['residual'] or 'none'}; stored encrypted, digest {report['digest']}")
    if report.get("canaries"):
        c = report["canaries"]
        stage("dataset", f"{c['planted']} canaries planted (x{c['repeats']}) and "
              f"{c['controls']} controls kept aside, for the privacy check")


class DemoGates(TypedDict):
    """The signed report's evaluation gates: whether all passed, each limit's value."""

    passed: bool
    checks: dict[str, Any]


class DemoResult(TypedDict):
    """`appliance demo`'s last line (docs/interface.md's fields first, then details)."""

    artifact: str
    eval_loss_before: float
    eval_loss_after: float
    verified: bool
    root_digest: str
    signer: str
    fingerprints: dict[str, str]
    home: str
    evaluation: DemoGates
    privacy: dict[str, Any] | None
    """The privacy check's audit numbers (`privacy.audit_fields`), None when not measured."""
    samples: list[Answer]


def run_demo(home: Home, *, passphrase: Passphrase,
             on_stage: Stage | None = None,
             on_event: Callable[[dict[str, Any]], None] | None = None) -> DemoResult:
    """Run every stage; returns the promised result fields plus details."""
    from appliance.service.artifacts import verify
    from appliance.service.train import train

    stage = on_stage or (lambda *_: None)
    _init(home, passphrase, stage)
    _model(home, passphrase, stage)
    _dataset(home, passphrase, stage)
    stage("train", "QLoRA (NF4 base, LoRA adapters) in a network-isolated child process")
    result = train(home, RECIPE, passphrase=passphrase, on_event=on_event,
                   check_privacy=True)
    before, after = result.eval_before.get("loss"), result.eval_after.get("loss")
    if before is None or after is None:
        raise TrainingError("the run finished without eval results", where=str(result.artifact_dir))
    stage("eval", f"held-out loss {before:.4f} -> {after:.4f}")
    gates = _gates(result.artifact_dir, stage)
    privacy = _privacy(result.artifact_dir, stage)
    verdict = verify(home, result.artifact_dir)
    stage("verify", f"signature and every file: {'ok' if verdict['ok'] else verdict['reason']}")
    from appliance import keys

    fps = keys.fingerprints(home)
    stage("keys", f"write down off this machine: signing key {fps.signing}, checkpoint key "
          f"{fps.checkpoint} (auditors pin them with --trusted-key)")
    samples = _samples(home, result.artifact_dir, stage) if verdict["ok"] else []
    return {"artifact": str(result.artifact_dir), "eval_loss_before": before,
            "eval_loss_after": after, "verified": bool(verdict["ok"]),
            "root_digest": verdict["root_digest"], "signer": verdict["signer"],
            "fingerprints": {"signing": fps.signing, "checkpoint": fps.checkpoint},
            "home": str(home.root), "evaluation": gates, "privacy": privacy,
            "samples": samples}


def _gates(artifact: Path, stage: Stage) -> DemoGates:
    """The signed report's evaluation gates, one stage line each."""
    import json

    evaluation = json.loads((artifact / "report.json").read_text("utf-8"))["evaluation"]
    best = evaluation.get("best")
    if best:
        stage("eval", f"adapter of step {best['step']} kept: {best['reason']}")
    for check in evaluation["checks"]:
        stage("gate", f"{'pass' if check['passed'] else 'FAIL'} {check['limit']}: "
              f"{check['detail']}")
    return {"passed": evaluation["passed"],
            "checks": {c["limit"]: c["value"] for c in evaluation["checks"]}}


def _privacy(artifact: Path, stage: Stage) -> dict[str, Any] | None:
    """The signed report's canary exposure result, one stage line."""
    import json

    from appliance.service.privacy import audit_fields

    summary = json.loads((artifact / "report.json").read_text("utf-8")).get("privacy")
    if not summary:
        stage("privacy", "not measured")
        return None
    fields = audit_fields(summary)
    stage("privacy", f"{fields['verdict']}: planted canaries {fields['mean_planted_bits']} "
          f"bits of exposure on average against {fields['mean_control_bits']} for controls "
          f"never trained on (p = {fields['p_value']}); {fields['extraction_hits']} "
          "extracted; signed with the artifact")
    return fields


def _samples(home: Home, artifact: Path, stage: Stage) -> list[Answer]:
    """The shipped sample prompts answered by the base model and by the adapter."""
    from appliance.service.generate import generate, read_prompts

    stage("try", "two sample prompts, base model against the adapter, in the isolated child")
    rows = generate(home, artifact, read_prompts(PROMPTS), compare_base=True,
                    max_new_tokens=40)
    for row in rows:
        stage("try", f"> {row['prompt']}")
        stage("try", f"  base:    {row['base']}")
        stage("try", f"  adapter: {row['adapter']}")
    return rows
