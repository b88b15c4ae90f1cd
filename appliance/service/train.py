"""Training operations for the CLI and TUI: check, isolate, run, collect the artifact.

The parent (this process) validates the recipe against the policy, checks the base model's
digest, refuses without a network namespace, reads the records (from the vault, decrypted
in memory), derives the run's checkpoint key, and hands everything to the isolated child
over a pipe. It writes the audit events (including the child's tripwire reports), the
metrics, and the artifact.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from appliance import audit, trust
from appliance.digests import file_sha256
from appliance.errors import (
    DatasetFormatError,
    IntegrityError,
    PolicyViolation,
    TrainingError,
    UsageError,
)
from appliance.fsutil import atomic_write_text
from appliance.home import Home
from appliance.models import store
from appliance.policy import Policy, load_policy, policy_digest
from appliance.service import cluster
from appliance.train import artifact, checkpoint, gates, general, isolation, modelcard
from appliance.train import metrics as run_metrics
from appliance.train.cancel import Relay
from appliance.train.data import validate_records
from appliance.train.recipe import (
    Recipe,
    check_against_policy,
    load_recipe,
    parse_recipe,
    world_size,
)
from appliance.train.trainer import total_steps

Event = dict[str, Any]
INJECT_NAN_ENV = "APPLIANCE_TEST_INJECT_NAN_STEP"
"""Test-only (not a product option, not in the policy or the recipe): multiply the loss of
this optimizer step by NaN in the trainer, to show that the guard stops the run at once."""


class RecordsProvider(Protocol):
    """Reads one split of a dataset as records, decrypted in memory."""

    def __call__(self, home: Home, policy: Policy, master_key: bytes, name: str,
                 split: str) -> list[dict[str, Any]]:
        """Records of `split` ("train" or "eval") of dataset `name`."""
        ...


def vault_records(home: Home, policy: Policy,  # noqa: ARG001 - RecordsProvider's signature
                  master_key: bytes, name: str, split: str) -> list[dict[str, Any]]:
    """The vault's reader: one split, decrypted in memory after the whole file verified."""
    from appliance.vault.store import read_dataset

    return list(read_dataset(home, master_key, name, split, purpose="train"))


@dataclass(frozen=True)
class TrainResult:
    """The outcome of one finished run."""

    run_id: str
    artifact_dir: Path
    adapter_sha256: str
    eval_before: dict[str, Any]
    eval_after: dict[str, Any]
    signed: bool


def records_digest(train: list[dict[str, Any]], evals: list[dict[str, Any]]) -> str:
    """The dataset digest as the vault defines it (what the import report, `dataset list`,
    provenance and resume all show), so one dataset has one digest everywhere."""
    from appliance.vault.frames import digest_of

    return digest_of(train, evals)


def new_run_id() -> str:
    """A sortable, unique run id."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrainingError("this run is already being trained by another process",
                                where=str(run_dir)) from None
        yield
    finally:
        os.close(fd)


def _passphrase(passphrase_file: str | None) -> bytes:
    from appliance.passphrase import read_passphrase

    return read_passphrase(passphrase_file, prompt="Passphrase: ")


def train(home: Home, recipe_path: str | Path | None = None, *, resume: str | None = None,
          passphrase_file: str | None = None, records: RecordsProvider = vault_records,
          on_event: Callable[[Event], None] | None = None, echo_child_output: bool = False,
          processes: int | None = None, cluster_keys: dict[str, Any] | None = None
          ) -> TrainResult:
    """Run (or resume) one training run to a finished artifact.

    SIGINT/SIGTERM (when called from the main thread) cancel the run at any moment: before
    the trainer starts, nothing is written; before its first step, it ends at once; after
    that, it stops at the next step boundary with a checkpoint. Each ends in TrainingError
    (exit 1) naming the resume command, with a `train.cancelled` audit event. A second
    signal kills the trainer; its last checkpoint stays usable. `processes` overrides the
    recipe's number of training processes (new runs only); `cluster_keys` its `[cluster]`
    keys (nnodes, node_rank, rendezvous, interface: several machines, docs/scale-out.md).
    """
    relay = Relay()
    installed = relay.install()
    try:
        return _train(home, recipe_path, resume=resume, passphrase_file=passphrase_file,
                      records=records, on_event=on_event, echo_child_output=echo_child_output,
                      processes=processes, relay=relay, cluster_keys=cluster_keys or {})
    finally:
        if installed:
            relay.restore()


def _cancelled(home: Home, run_id: str, steps: int, *, step: int, checkpoint: bool,
               outcome: str = "stopped", stage: str = "training") -> TrainingError:
    """Audit a cancel and build the error that reports it."""
    audit.record(home, "train.cancelled", outcome=outcome, run_id=run_id, step=step,
                 checkpoint=checkpoint, stage=stage)
    if stage == "before start":
        what = "training cancelled before it started; nothing was written"
    elif outcome == "killed":
        what = (f"training killed by a second signal; the checkpoint of step {step} is kept"
                if step else "training killed by a second signal before any checkpoint")
    elif checkpoint:
        what = f"training stopped at step {step} of {steps}; checkpoint saved"
    elif step:
        what = f"training stopped at step {step} of {steps}; the checkpoint of step {step} " \
               "is kept"
    else:
        what = "training cancelled before the first step; there was nothing to save"
    return TrainingError(what, where=f"run {run_id}",
                         hint=f"resume with appliance train --resume {run_id}")


def _train(home: Home,  # noqa: PLR0912, PLR0915 - the run's steps, in order
           recipe_path: str | Path | None, *, resume: str | None, passphrase_file: str | None,
           records: RecordsProvider, on_event: Callable[[Event], None] | None,
           echo_child_output: bool, processes: int | None, relay: Relay,
           cluster_keys: dict[str, Any]) -> TrainResult:
    trust.require_home(home)
    policy = load_policy(home.policy_file)
    if resume:
        run_id = resume
        run_dir = home.runs_dir / run_id
        try:
            state = json.loads((run_dir / "run.json").read_text("utf-8"))
        except FileNotFoundError:
            raise UsageError(f"no run {run_id!r} to resume", where=str(home.runs_dir)) from None
        if state.get("status") == "done":
            raise UsageError(f"run {run_id!r} already finished",
                             where=state.get("artifact", str(run_dir)))
        if state.get("status") == "refused":
            raise UsageError(f"run {run_id!r} was refused at signing by the evaluation "
                             "limits; its adapter stays for inspection", where=str(run_dir),
                             hint="start a new run")
        recipe = parse_recipe(state["recipe"], f"{run_dir}/run.json")
        if processes is not None and processes != recipe.processes:
            raise UsageError("--processes applies to new runs; a resumed run keeps the "
                             f"{recipe.processes} process(es) it started with",
                             where=f"run {run_id}")
    else:
        if recipe_path is None:
            raise UsageError("give a RECIPE file or --resume RUN")
        recipe = load_recipe(recipe_path)
        if processes is not None:
            recipe = parse_recipe({**recipe.model_dump(), "processes": processes},
                                  "--processes")
        if cluster_keys:  # --nnodes, --node-rank, --rendezvous, --cluster-interface
            data = recipe.model_dump()
            recipe = parse_recipe({**data, "cluster": {**data["cluster"], **cluster_keys}},
                                  "--nnodes/--node-rank/--rendezvous/--cluster-interface")
        run_id = new_run_id()
        run_dir = home.runs_dir / run_id
        state = {}
    check_against_policy(recipe, policy)
    model = store.read_record(home, recipe.base_model)
    store.require_allowed(policy, model)
    iso = isolation.require_isolation()
    store.verify_weights(model)

    with relay.suspended():  # Ctrl-C at the prompt interrupts at once
        passphrase = _passphrase(passphrase_file)
    master_key = trust.unlock(home, passphrase, policy)  # checks the home manifest
    store.require_pinned(policy, model, trust.recorded_model(home, model.name))
    train_records = records(home, policy, master_key, recipe.dataset, "train")
    eval_records = records(home, policy, master_key, recipe.dataset, "eval")
    validate_records(train_records)
    validate_records(eval_records)
    if not train_records:
        raise DatasetFormatError("the training split is empty", where=recipe.dataset)
    if not eval_records:
        raise PolicyViolation("the dataset has no held-out eval split",
                              where="policy training.require_eval_split")
    from appliance.service.privacy import before_signing, canaries_for_training  # docs/privacy.md

    canaries = canaries_for_training(home, policy, master_key, recipe.dataset)
    steps = total_steps(recipe, len(train_records))
    if steps > policy.training.limits.max_steps:
        raise PolicyViolation(f"the recipe makes {steps} optimizer steps, over the policy "
                              f"limit training.limits.max_steps = "
                              f"{policy.training.limits.max_steps}", where="recipe")
    digest = records_digest(train_records, eval_records)
    if resume and state.get("dataset_digest") != digest:
        raise IntegrityError("the dataset changed since the run started", where=str(run_dir),
                             hint="start a new run")
    pdigest = policy_digest(policy)
    if resume and state.get("policy_digest") != pdigest:
        raise PolicyViolation("the active policy changed since the run started",
                              where=str(run_dir), hint="start a new run under this policy")
    if relay.requested:
        raise _cancelled(home, run_id, steps, step=checkpoint.latest_step(run_dir) or 0,
                         checkpoint=False, stage="before start")
    key = None
    if policy.training.encrypt_checkpoints:
        from appliance.train.sealing import derive_run_key

        key = derive_run_key(master_key, run_id)
    with _run_lock(run_dir):
        if not resume:
            state = {"run_id": run_id, "status": "running", "recipe": recipe.model_dump(),
                     "base_model": {"name": model.name, "root_digest": model.root_digest,
                                    "source_digest": model.source_digest},
                     "dataset": {"name": recipe.dataset, "train_records": len(train_records),
                                 "eval_records": len(eval_records)},
                     "dataset_digest": digest, "policy_digest": pdigest,
                     "isolation": iso.detail, "total_steps": steps,
                     "started": _dt.datetime.now(_dt.UTC).isoformat()}
            atomic_write_text(run_dir / "run.json", json.dumps(state, indent=2))
        audit.record(home, "train.resume" if resume else "train.start", run_id=run_id,
                     base_model=model.root_digest, dataset_digest=digest,
                     policy_digest=pdigest, isolation=iso.detail, total_steps=steps,
                     processes=recipe.processes)
        if on_event is not None:  # the console learns the run id before the first step
            on_event({"type": "run", "run_id": run_id, "total_steps": steps,
                      "resume": bool(resume), "processes": recipe.processes})
        adapter_out = run_dir / "adapter"
        if adapter_out.exists():
            shutil.rmtree(adapter_out)
        # a run killed before its first checkpoint starts again from step 0
        from_step = checkpoint.latest_step(run_dir) if resume else None
        metrics = run_dir / "metrics.jsonl"
        run_metrics.rewind(metrics, from_step)  # lines after the checkpoint would repeat
        # absolute paths: the sandbox shows the child these paths alone, at the same place
        job = {"run_id": run_id, "run_dir": str(run_dir.absolute()),
               "model_dir": str(model.weights_dir.absolute()),
               "recipe": recipe.model_dump(), "train": train_records, "eval": eval_records,
               "checkpoint_key": key.hex() if key else None,
               "resume": from_step is not None, "adapter_out": str(adapter_out.absolute()),
               "general": general.paragraphs(recipe.eval.general_paragraphs),
               "patience": policy.evaluation.patience,
               "min_delta": policy.evaluation.min_delta,
               "inject_nan_at_step": int(os.environ.get(INJECT_NAN_ENV) or 0)}
        collected: dict[str, Any] = {"errors": [], "samples": [], "workers": []}

        def handle(event: Event) -> None:
            kind = event.get("type")
            if kind == "tripwire":
                isolation.audit_tripwire(home, run_id, event)
            elif kind == "worker":
                collected["workers"].append({k: v for k, v in event.items() if k != "type"})
            elif kind == "nodes":
                collected["nodes"] = event["nodes"]
            elif kind in ("step", "eval", "general", "checkpoint", "resumed", "stopped",
                          "guard", "early_stop", "best"):
                run_metrics.append(metrics, event)
                if kind in ("eval", "general"):
                    collected[f"{kind}_{event['phase']}"] = event
                    if event["phase"] == "before":
                        state[f"{kind}_before"] = event
                        atomic_write_text(run_dir / "run.json", json.dumps(state, indent=2))
                if kind in ("guard", "early_stop", "best"):
                    collected[kind] = event
                if kind == "stopped":
                    collected["stopped"] = event
            elif kind == "generations":
                collected["samples"] = event.get("samples", [])
            elif kind == "error":
                collected["errors"].append(event)
            elif kind == "done":
                collected["resources"] = {k: v for k, v in event.items()
                                          if k.startswith("peak_")}
            if on_event is not None:
                on_event(event)

        # ---- several machines (appliance.service.cluster) --------------------------------
        job["fingerprint"] = cluster.fingerprint(recipe, model.root_digest, digest, pdigest)
        job["node"] = cluster.node(home, recipe)
        collected["cluster_policy"] = cluster.policy_section(policy)
        with cluster.network(policy, recipe) as (network, job["cluster"]):
            spec = isolation.child_spec(read_only=(model.weights_dir,), writable=(run_dir,),
                                        passphrase_file=passphrase_file, network=network)
            result = isolation.run_isolated(job, handle, iso, spec=spec, relay=relay,
                                            launch=world_size(recipe) > 1,
                                            echo_output=echo_child_output)
            cluster.audit_drops(home, run_id, network)
        if recipe.cluster.node_rank > 0 and result.returncode == 0 and not collected["errors"]:
            return _node_done(home, run_id, run_dir, state)
        # ---- end of several machines ----------------------------------------------------
        if "guard" in collected:
            raise _guard_stop(home, run_id, collected["guard"])
        if "stopped" in collected:
            stopped = collected["stopped"]
            raise _cancelled(home, run_id, steps, step=int(stopped.get("step") or 0),
                             checkpoint=bool(stopped.get("checkpoint", True)))
        if relay.requests > 1 and result.returncode != 0:
            raise _cancelled(home, run_id, steps, step=checkpoint.latest_step(run_dir) or 0,
                             checkpoint=False, outcome="killed")
        if result.returncode != 0 or "eval_after" not in collected:
            why = collected["errors"][-1]["message"] if collected["errors"] else \
                f"trainer exited with status {result.returncode}"
            kind = collected["errors"][-1]["kind"] if collected["errors"] else "exit"
            audit.record(home, "train.failed", outcome="failed", run_id=run_id, error=kind)
            raise TrainingError(f"training failed: {why}", where=f"run {run_id}",
                                hint=f"run again with --debug to see the trainer's output; "
                                     f"resume with appliance train --resume {run_id}")
        if "early_stop" in collected:
            early = collected["early_stop"]
            audit.record(home, "train.early_stop", run_id=run_id, step=early["step"],
                         best_step=early["best_step"], best_loss=early["best_loss"],
                         patience=early["patience"],
                         reason="held-out loss did not improve for "
                                f"{early['patience']} evaluations")
        collected["evaluation"] = _gate(home, policy, recipe, run_id, state, collected)
        if canaries is not None:  # the canary exposure check, before anything is signed
            collected["privacy"] = before_signing(
                home, policy, canaries, adapter_dir=adapter_out, run_dir=run_dir,
                model_dir=model.weights_dir, recipe=state["recipe"], run_id=run_id)
        return _finish(home, model, run_id, run_dir, state, collected, iso.detail, passphrase)


def _node_done(home: Home, run_id: str, run_dir: Path, state: dict[str, Any]) -> TrainResult:
    """A node other than 0 is done once its workers are: node 0 alone signs the artifact."""
    state.update(status="done", finished=_dt.datetime.now(_dt.UTC).isoformat(),
                 signed_by="node 0")
    atomic_write_text(run_dir / "run.json", json.dumps(state, indent=2))
    audit.record(home, "train.finish", run_id=run_id, signed=False,
                 node_rank=state["recipe"]["cluster"]["node_rank"])
    return TrainResult(run_id, run_dir, "", {}, {}, False)


def _guard_stop(home: Home, run_id: str, trip: Event) -> TrainingError:
    """Audit a guard's stop and build the error that reports it."""
    audit.record(home, "train.guard", outcome="stopped", run_id=run_id, step=trip["step"],
                 reason=trip["kind"], value=trip["value"])
    return TrainingError(f"training stopped by a guard at step {trip['step']}: "
                         f"{trip['message']}", where=f"run {run_id}",
                         hint="lower optim.learning_rate or check the data; nothing was signed")


def _gate(home: Home, policy: Policy, recipe: Recipe, run_id: str, state: dict[str, Any],
          collected: dict[str, Any]) -> dict[str, Any]:
    """The policy's evaluation limits on the run's numbers; refuses a failing run before
    anything is signed (its adapter and checkpoints stay in the run directory)."""
    eval_before = state.get("eval_before") or collected.get("eval_before", {})
    result = gates.verdict(
        policy.evaluation, eval_before=eval_before, eval_after=collected["eval_after"],
        general_before=state.get("general_before") or collected.get("general_before"),
        general_after=collected.get("general_after"),
        samples=collected["samples"],
        format_regex=recipe.eval.format_regex)
    if "best" in collected:
        best = collected["best"]
        result["best"] = {k: best[k] for k in ("step", "final_step", "loss", "evaluations",
                                               "reason")}
    if "early_stop" in collected:
        result["early_stop"] = {k: collected["early_stop"][k]
                                for k in ("step", "best_step", "patience")}
    result["general_text"] = general.SOURCE
    failed = [c["limit"] for c in result["checks"] if not c["passed"]]
    audit.record(home, "train.evaluation", outcome="passed" if not failed else
                 "refused" if policy.evaluation.enforce else "recorded", run_id=run_id,
                 failed=failed, checks={c["limit"]: c["value"] for c in result["checks"]})
    if failed and policy.evaluation.enforce:
        run_dir = home.runs_dir / run_id
        state.update(status="refused", evaluation=result)
        atomic_write_text(run_dir / "run.json", json.dumps(state, indent=2))
        raise PolicyViolation(f"not signed: {gates.refusal(result)}", where=f"run {run_id}",
                              hint=f"the adapter stays in {run_dir / 'adapter'} for "
                                   "inspection; lower the learning rate or enable "
                                   "eval.early_stopping")
    return result


def _finish(home: Home, model: store.ModelRecord, run_id: str, run_dir: Path,
            state: dict[str, Any], collected: dict[str, Any], isolation_detail: str,
            passphrase: bytes) -> TrainResult:
    """Assemble, sign and move the artifact into place; audit; mark the run done."""
    staging = home.artifacts_dir / ".staging" / run_id
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    adapter_src = run_dir / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(adapter_src / name, staging / name)
    shutil.copy2(run_dir / "metrics.jsonl", staging / "metrics.jsonl")
    artifact.make_portable(staging, model.weights_dir, model.name)
    adapter_digest = "sha256:" + file_sha256(staging / "adapter_model.safetensors")
    strip = ("type",)
    eval_before = {k: v for k, v in (state.get("eval_before") or
                                     collected.get("eval_before", {})).items()
                   if k not in strip}
    eval_after = {k: v for k, v in collected["eval_after"].items() if k not in strip}
    evals = {"before": eval_before, "after": eval_after}
    report = {"run_id": run_id, "recipe": state["recipe"], "base_model": state["base_model"],
              "dataset": state["dataset"], "dataset_digest": state["dataset_digest"],
              "policy_digest": state["policy_digest"], "total_steps": state["total_steps"],
              "eval": evals, "samples": collected["samples"],
              "adapter_sha256": adapter_digest, "isolation": isolation_detail,
              "resources": collected.get("resources", {})}
    if collected.get("workers"):
        report["distributed"] = {"processes": len(collected["workers"]),
                                 "workers": sorted(collected["workers"],
                                                   key=lambda w: int(w.get("rank", 0)))}
    if collected.get("nodes"):
        report.setdefault("distributed", {})["nodes"] = collected["nodes"]
    if "privacy" in collected:
        report["privacy"] = collected["privacy"]
    report["evaluation"] = collected["evaluation"]
    atomic_write_text(staging / "report.json", json.dumps(report, indent=2, sort_keys=True))
    finished = _dt.datetime.now(_dt.UTC).isoformat()
    prov = artifact.provenance(
        run_id=run_id, policy_digest=state["policy_digest"],
        model={**state["base_model"], **artifact.base_model_info(model)},
        dataset={"name": state["dataset"]["name"], "digest": state["dataset_digest"],
                 "train_records": state["dataset"]["train_records"],
                 "eval_records": state["dataset"]["eval_records"]},
        tokenizer_digest="sha256:" + model.files.get("tokenizer.json", ""),
        recipe=cluster.recipe_for_provenance(state["recipe"]), isolation=isolation_detail,
        evals={phase: {k: v for k, v in values.items() if k in ("loss", "perplexity",
                                                                 "records", "tokens")}
               for phase, values in evals.items()},
        adapter_digest=adapter_digest, started=state["started"], finished=finished)
    if "privacy" in collected:
        prov["privacy"] = collected["privacy"]
    prov["evaluation"] = collected["evaluation"]
    if collected.get("nodes"):  # every node of a cluster run, and the cluster policy
        prov["cluster"] = {"nodes": collected["nodes"],
                           "policy": collected.get("cluster_policy")}
    modelcard.write_card(staging, prov)
    target = home.artifacts_dir / run_id
    artifact.finalize_artifact(home, staging, target, prov, passphrase)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    shutil.rmtree(adapter_src, ignore_errors=True)
    state.update(status="done", artifact=str(target), finished=finished)
    atomic_write_text(run_dir / "run.json", json.dumps(state, indent=2))
    audit.record(home, "train.finish", run_id=run_id, adapter_sha256=adapter_digest,
                 eval_loss_before=eval_before.get("loss"), eval_loss_after=eval_after.get("loss"),
                 signed=True, artifact=str(target))
    return TrainResult(run_id, target, adapter_digest, eval_before, eval_after, True)


def probe_isolation(home: Home, probe: str, **params: Any) -> list[Event]:
    """Run an isolation self-test in the trainer child ("network": connect to
    params host/port by every route; "nf4": a real NF4 forward pass on params model_dir).
    Tripwire reports are audited like in training; returns every event."""
    iso = isolation.require_isolation()
    events: list[Event] = []

    def handle(event: Event) -> None:
        if event.get("type") == "tripwire":
            isolation.audit_tripwire(home, f"probe-{probe}", event)
        events.append(event)

    model_dir = params.get("model_dir")
    spec = isolation.child_spec(read_only=(Path(model_dir),) if model_dir else (),
                                writable=tuple(Path(p) for p in params.get("writable", ())))
    result = isolation.run_isolated({"probe": probe, **params}, handle, iso, spec=spec)
    if result.returncode != 0:
        raise TrainingError(f"isolation probe {probe!r} failed (status {result.returncode}): "
                            + " | ".join(result.output_tail[-3:]))
    return events
