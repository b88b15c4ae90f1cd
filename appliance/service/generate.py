"""Trying a signed adapter: `appliance generate ARTIFACT --prompts FILE [--compare-base]`.

The parent verifies the artifact's signature, checks the base model it names (allowed by
the policy, weights unchanged since import) and reads the prompts; the model runs in the
trainer's isolated child (appliance.train.generate: no network, no torch in this process).
Every answer is scanned by the PII detector before it is returned: detected identifiers are
masked as `<ENTITY_TYPE>` and counted in the audit log (counts only, never text).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance import audit, trust
from appliance.errors import DatasetFormatError, IntegrityError, TrainingError, UsageError
from appliance.home import Home
from appliance.models import store
from appliance.policy import Policy, load_policy
from appliance.train import isolation
from appliance.train.data import ROLES

Conversation = list[dict[str, str]]
MAX_PROMPTS = 1000


def _conversation(value: Any, where: str) -> Conversation:
    if isinstance(value, dict) and isinstance(value.get("prompt"), str) and value["prompt"]:
        return [{"role": "user", "content": value["prompt"]}]
    messages = value.get("messages") if isinstance(value, dict) else None
    if (isinstance(messages, list) and messages
            and all(isinstance(m, dict) and m.get("role") in ROLES
                    and isinstance(m.get("content"), str) for m in messages)
            and messages[-1]["role"] == "user"):
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    raise DatasetFormatError('each line needs {"prompt": TEXT} or {"messages": [...]} '
                             "ending with a user message (roles system, user, assistant)",
                             where=where)


def read_prompts(path: str | Path) -> list[Conversation]:
    """The conversations of a JSONL prompts file (DatasetFormatError naming the line)."""
    path = Path(path)
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError("prompts file not found", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"cannot read the prompts file: {exc}", where=str(path)) \
            from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise DatasetFormatError("not valid JSON", where=f"{path}:{number}") from None
        out.append(_conversation(value, f"{path}:{number}"))
    if not out or len(out) > MAX_PROMPTS:
        raise DatasetFormatError(f"give between 1 and {MAX_PROMPTS} prompts", where=str(path))
    return out


def _artifact_model(home: Home, policy: Policy, artifact: Path, verdict: dict[str, Any],
                    copy: Path) -> tuple[dict[str, Any], store.ModelRecord]:
    """The report of the verified copy of `artifact` and its base model (allowed,
    unchanged)."""
    if not verdict["ok"]:
        raise IntegrityError(f"the artifact does not verify: {verdict['reason']}",
                             where=str(artifact), hint="check it with appliance verify")
    report = json.loads((copy / "report.json").read_text("utf-8"))
    model = store.read_record(home, str(report["base_model"]["name"]))
    store.require_allowed(policy, model)
    if model.root_digest != report["base_model"]["root_digest"]:
        raise IntegrityError("the imported base model is not the one the adapter was "
                             "trained on", where=str(artifact))
    store.verify_weights(model)
    return report, model


class Masker:
    """The policy's PII detector over answers: identifiers become `<ENTITY_TYPE>`."""

    def __init__(self, policy: Policy) -> None:
        from appliance.service.scrub import build_analyzer

        self.analyzer = build_analyzer(policy)
        self.counts: Counter[str] = Counter()

    def __call__(self, text: str) -> str:
        """`text` with every detected identifier masked (and counted)."""
        from appliance.scrub.engine import analyze_all
        from appliance.scrub.operators import merge

        (outcome,) = analyze_all(self.analyzer, [text], workers=1)
        if outcome.quarantined is not None:
            self.counts["QUARANTINED"] += 1
            return "<answer withheld: it could not be checked for personal data>"
        for span in reversed(merge(outcome.detections)):
            self.counts[span.entity] += 1
            text = text[:span.start] + f"<{span.entity}>" + text[span.end:]
        return text


def generate(home: Home, artifact: str | Path, prompts: list[Conversation], *,
             compare_base: bool = False, max_new_tokens: int = 64,
             on_answer: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One row per prompt: `prompt` (its last user message), `adapter` and, with
    `compare_base`, `base`; answers PII-masked. `on_answer` sees each row as it comes."""
    from appliance.service.artifacts import verified_copy

    trust.require_home(home)
    policy = load_policy(home.policy_file)
    artifact = Path(artifact).absolute()
    iso = isolation.require_isolation()
    masker = Masker(policy)
    rows: list[dict[str, Any]] = []
    errors: list[str] = []

    def handle(event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "tripwire":
            isolation.audit_tripwire(home, f"generate-{artifact.name}", event)
        elif kind == "error":
            errors.append(str(event.get("message", "")))
        elif kind == "answer":
            index = int(event["index"])
            row = {"prompt": prompts[index][-1]["content"],
                   "adapter": masker(str(event["adapter"]))}
            if "base" in event:
                row["base"] = masker(str(event["base"]))
            rows.append(row)
            if on_answer is not None:
                on_answer(row)

    # the model reads only a verified private copy of the artifact, in the sandbox
    with verified_copy(home, artifact) as (copy, verdict):
        report, model = _artifact_model(home, policy, artifact, verdict, copy)
        job = {"kind": "generate", "model_dir": str(model.weights_dir.absolute()),
               "adapter_dir": str(copy.absolute()), "recipe": report["recipe"],
               "prompts": prompts, "compare_base": compare_base,
               "max_new_tokens": max_new_tokens}
        spec = isolation.child_spec(read_only=(model.weights_dir.absolute(), copy.absolute()))
        result = isolation.run_isolated(job, handle, iso, spec=spec)
    audit.record(home, "generate", outcome="ok" if result.returncode == 0 else "failed",
                 artifact=artifact.name, prompts=len(prompts), answers=len(rows),
                 compare_base=compare_base, pii_masked=dict(masker.counts))
    if result.returncode != 0:
        why = errors[-1] if errors else f"the model process exited with status " \
                                        f"{result.returncode}"
        raise TrainingError(f"generation failed: {why}", where=str(artifact),
                            hint="run again with --debug")
    return rows
