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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

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
from appliance.passphrase import Passphrase, resolve
from appliance.policy import Policy, load_policy, policy_digest
from appliance.service import cluster
from appliance.train import artifact, checkpoint, gates, general, isolation, modelcard
from appliance.train import metrics as run_metrics
from appliance.train.cancel import EXIT_STOPPED, Relay
from appliance.train.data import validate_records
from appliance.train.events import (
    BestEvent,
    EarlyStopEvent,
    ErrorEvent,
    EvalEvent,
    GuardEvent,
    Kind,
    StoppedEvent,
    TrainJob,
    WorkerFinished,
)
from appliance.train.recipe import (
    Recipe,
    check_against_policy,
    load_recipe,
    parse_recipe,
    world_size,
)
from appliance.train.trainer import total_steps

if TYPE_CHECKING:
    from appliance.privacy.canaries import CanarySet
    from appliance.service.evalsets import SacredSet
    from appliance.service.privacy import PrivacyResult

Event = dict[str, Any]
INJECT_NAN_ENV = "APPLIANCE_TEST_INJECT_NAN_STEP"
"""Test-only (not a product option, not in the policy or the recipe): multiply the loss of
this optimizer step by NaN in the trainer, to show that the guard stops the run at once."""
EXIT_AT_END_ENV = "APPLIANCE_TEST_WORKER_EXIT_AT_END"
"""Test-only, `RANK:STATUS`: that training worker exits with STATUS once its work is done."""


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


def train(home: Home, recipe_path: str | Path | None = None, *, passphrase: Passphrase,
          resume: str | None = None, records: RecordsProvider = vault_records,
          on_event: Callable[[Event], None] | None = None, echo_child_output: bool = False,
          processes: int | None = None, check_privacy: bool = False,
          cluster_keys: dict[str, Any] | None = None) -> TrainResult:
    """Run (or resume) one training run to a finished artifact.

    SIGINT/SIGTERM (when called from the main thread) cancel the run at any moment: before
    the trainer starts, nothing is written; before its first step, it ends at once; after
    that, it stops at the next step boundary with a checkpoint. Each ends in TrainingError
    (exit 1) naming the resume command, with a `train.cancelled` audit event. A second
    signal kills the trainer; its last checkpoint stays usable. `processes` overrides the
    recipe's number of training processes (new runs only); `cluster_keys` its `[cluster]`
    keys (nnodes, node_rank, rendezvous, interface: several machines, docs/scale-out.md).
    `passphrase` unlocks the vault
    and signs the artifact. `check_privacy` runs the canary exposure check before signing
    even where the policy's privacy.check_before_signing is off (the demo does: the dataset
    must have been imported with canaries).
    """
    relay = Relay()
    installed = relay.install()
    try:
        return _train(home, recipe_path, resume=resume, passphrase=passphrase,
                      records=records, on_event=on_event, echo_child_output=echo_child_output,
                      processes=processes, relay=relay, check_privacy=check_privacy,
                      cluster_keys=cluster_keys or {})
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


@dataclass(frozen=True)
class RunPlan:
    """What resume-or-new decided: the run, its recipe and its run.json so far."""

    run_id: str
    run_dir: Path
    recipe: Recipe
    state: dict[str, Any]
    resumed: bool


@dataclass
class RunState:
    """One run as its setup steps establish it (what the launch and the outcome checks
    read). `state` is the run's run.json, kept up to date as the run goes."""

    home: Home
    policy: Policy
    run_id: str
    run_dir: Path
    recipe: Recipe
    state: dict[str, Any]
    resumed: bool
    model: store.ModelRecord
    iso: isolation.Isolation
    train_records: list[dict[str, Any]] = field(default_factory=list)
    eval_records: list[dict[str, Any]] = field(default_factory=list)
    dataset_digest: str = ""
    policy_digest: str = ""
    total_steps: int = 0
    canaries: CanarySet | None = None
    checkpoint_key: bytes | None = None
    sacred: SacredSet | None = None
    """The recipe's eval-only dataset (`eval.dataset`): name, digest and records."""

    @property
    def adapter_out(self) -> Path:
        """Where the trainer writes the finished adapter."""
        return self.run_dir / "adapter"

    @property
    def metrics(self) -> Path:
        """The run's metrics log."""
        return self.run_dir / "metrics.jsonl"

    def save(self) -> None:
        """Write run.json."""
        atomic_write_text(self.run_dir / "run.json", json.dumps(self.state, indent=2))


@dataclass
class RunCollector:
    """Receives the trainer's events (the handler of run_isolated): audits tripwires, logs
    metrics, keeps what the outcome checks, the gate and the artifact need, and passes
    every event on to `on_event`."""

    run: RunState
    on_event: Callable[[Event], None] | None = None
    errors: list[ErrorEvent] = field(default_factory=list)
    samples: list[Any] = field(default_factory=list)
    workers: list[WorkerFinished] = field(default_factory=list)
    phases: dict[str, EvalEvent] = field(default_factory=dict)
    """The `eval` and `general` events of this process, by "eval_before", "general_after"..."""
    guard: GuardEvent | None = None
    early_stop: EarlyStopEvent | None = None
    best: BestEvent | None = None
    stopped: StoppedEvent | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    """Every node of a cluster run (host key fingerprint, hardware, rank), from rank 0."""

    METRIC_EVENTS = frozenset((Kind.STEP, Kind.EVAL, Kind.GENERAL, Kind.CHECKPOINT,
                               Kind.RESUMED, Kind.STOPPED, Kind.GUARD, Kind.EARLY_STOP,
                               Kind.BEST))

    def __call__(self, event: Event) -> None:
        """Take one event from the child."""
        kind = event.get("type")
        if kind == Kind.TRIPWIRE:
            isolation.audit_tripwire(self.run.home, self.run.run_id, event)
        elif kind == Kind.WORKER_FINISHED:
            self.workers.append(cast(WorkerFinished, {k: v for k, v in event.items()
                                                      if k != "type"}))
        elif kind == Kind.NODES:
            self.nodes = event["nodes"]
        elif kind in self.METRIC_EVENTS:
            run_metrics.append(self.run.metrics, event)
            self._keep(str(kind), event)
        elif kind == Kind.GENERATIONS:
            self.samples = event.get("samples", [])
        elif kind == Kind.ERROR:
            self.errors.append(cast(ErrorEvent, event))
        elif kind == Kind.DONE:
            self.resources = {k: v for k, v in event.items() if k.startswith("peak_")}
        if self.on_event is not None:
            self.on_event(event)

    def _keep(self, kind: str, event: Event) -> None:
        if kind in (Kind.EVAL, Kind.GENERAL):
            self.phases[f"{kind}_{event['phase']}"] = cast(EvalEvent, event)
            if event["phase"] == "before":  # a resumed run has no "before" of its own
                self.run.state[f"{kind}_before"] = event
                self.run.save()
        elif kind == Kind.GUARD:
            self.guard = cast(GuardEvent, event)
        elif kind == Kind.EARLY_STOP:
            self.early_stop = cast(EarlyStopEvent, event)
        elif kind == Kind.BEST:
            self.best = cast(BestEvent, event)
        elif kind == Kind.STOPPED:
            self.stopped = cast(StoppedEvent, event)

    def before(self, kind: str) -> EvalEvent | None:
        """The `kind` ("eval" or "general") numbers before training: recorded in run.json
        when the run started (a resumed run), else this process's."""
        recorded = self.run.state.get(f"{kind}_before")
        return cast(EvalEvent, recorded) if recorded else self.phases.get(f"{kind}_before")


def _train(home: Home, recipe_path: str | Path | None, *, resume: str | None,
           passphrase: Passphrase, records: RecordsProvider,
           on_event: Callable[[Event], None] | None, echo_child_output: bool,
           processes: int | None, relay: Relay, check_privacy: bool = False,
           cluster_keys: dict[str, Any] | None = None) -> TrainResult:
    """The run's steps, in order: resume or new, policy checks, unlock, records, canaries,
    step and resume checks, keys; then under the run lock: start, launch, outcome checks,
    the evaluation gate, the privacy check, the artifact."""
    trust.require_home(home)
    policy = load_policy(home.policy_file)
    plan = _resume_run(home, resume, processes, cluster_keys or {}) if resume else \
        _new_run(home, recipe_path, processes, cluster_keys or {})
    model, iso = _check_policy(home, policy, plan.recipe)
    run = RunState(home, policy, plan.run_id, plan.run_dir, plan.recipe, plan.state,
                   plan.resumed, model, iso)
    with relay.suspended():  # Ctrl-C at a prompt interrupts at once
        secret = resolve(passphrase)
    master_key = trust.unlock(home, secret, policy)  # checks the home manifest
    store.require_pinned(policy, run.model, trust.recorded_model(home, run.model.name))
    _read_records(run, master_key, records)
    _setup_canaries(run, master_key, force=check_privacy)
    _check_steps(run)
    _check_resumable(run)
    if relay.requested:
        raise _cancelled(home, run.run_id, run.total_steps,
                         step=checkpoint.latest_step(run.run_dir) or 0, checkpoint=False,
                         stage="before start")
    _setup_keys(run, master_key)
    with _run_lock(run.run_dir):
        _record_start(run, on_event)
        collector = RunCollector(run, on_event)
        result = _launch(run, collector, relay=relay, echo_child_output=echo_child_output)
        if run.recipe.cluster.node_rank > 0 and result.returncode == 0 and not collector.errors:
            return _node_done(run)
        evals = _check_outcome(run, collector, result, relay)
        evaluation = _gate(run, collector, evals)
        privacy = _check_privacy(run)
        return _finish(run, collector, evals, evaluation, privacy, secret)


def _resume_run(home: Home, run_id: str, processes: int | None,
                cluster_keys: dict[str, Any]) -> RunPlan:
    """The run `run_id` as run.json left it, if it can go on. A cluster run keeps the
    [cluster] settings it started with (run.json holds them); flags given again must say
    the same."""
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
    recorded = recipe.cluster.model_dump()
    for key, value in sorted(cluster_keys.items()):
        if recorded.get(key) != value:
            flag = CLUSTER_FLAGS.get(key, key)
            raise UsageError(f"{flag} {value} differs from the {recorded.get(key)} the run "
                             "started with; a resumed run keeps its cluster settings",
                             where=f"run {run_id}",
                             hint=f"leave {flag} out: appliance train --resume {run_id}")
    return RunPlan(run_id, run_dir, recipe, state, resumed=True)


CLUSTER_FLAGS = {"nnodes": "--nnodes", "node_rank": "--node-rank",
                 "rendezvous": "--rendezvous", "interface": "--cluster-interface"}


def _new_run(home: Home, recipe_path: str | Path | None, processes: int | None,
             cluster_keys: dict[str, Any]) -> RunPlan:
    """A new run of the recipe at `recipe_path` (nothing is written yet)."""
    if recipe_path is None:
        raise UsageError("give a RECIPE file or --resume RUN")
    recipe = load_recipe(recipe_path)
    if processes is not None:
        recipe = parse_recipe({**recipe.model_dump(), "processes": processes}, "--processes")
    if cluster_keys:  # --nnodes, --node-rank, --rendezvous, --cluster-interface
        data = recipe.model_dump()
        recipe = parse_recipe({**data, "cluster": {**data["cluster"], **cluster_keys}},
                              "--nnodes/--node-rank/--rendezvous/--cluster-interface")
    run_id = new_run_id()
    return RunPlan(run_id, home.runs_dir / run_id, recipe, {}, resumed=False)


def _check_policy(home: Home, policy: Policy,
                  recipe: Recipe) -> tuple[store.ModelRecord, isolation.Isolation]:
    """The recipe and its base model under the policy; the sandbox; the weights' digest."""
    check_against_policy(recipe, policy)
    model = store.read_record(home, recipe.base_model)
    store.require_allowed(policy, model)
    iso = isolation.require_isolation()
    store.verify_weights(model)
    return model, iso


def _read_records(run: RunState, master_key: bytes, records: RecordsProvider) -> None:
    """Both splits, decrypted in memory and validated, and their digest."""
    name = run.recipe.dataset
    run.train_records = records(run.home, run.policy, master_key, name, "train")
    run.eval_records = records(run.home, run.policy, master_key, name, "eval")
    validate_records(run.train_records)
    validate_records(run.eval_records)
    if not run.train_records:
        raise DatasetFormatError("the training split is empty", where=name)
    if not run.eval_records:
        raise PolicyViolation("the dataset has no held-out eval split",
                              where="policy training.require_eval_split")
    run.dataset_digest = records_digest(run.train_records, run.eval_records)
    from appliance.service.evalsets import sacred_set

    run.sacred = sacred_set(run.home, master_key, run.recipe)  # eval-only, never trained on


def _setup_canaries(run: RunState, master_key: bytes, *, force: bool = False) -> None:
    """The dataset's canaries when the policy checks exposure before signing (or `force`)."""
    from appliance.service.privacy import canaries_for_training  # docs/privacy.md

    run.canaries = canaries_for_training(run.home, run.policy, master_key, run.recipe.dataset,
                                         force=force)


def _check_steps(run: RunState) -> None:
    """The run's optimizer steps under the policy's limit."""
    run.total_steps = total_steps(run.recipe, len(run.train_records))
    limit = run.policy.training.limits.max_steps
    if run.total_steps > limit:
        raise PolicyViolation(f"the recipe makes {run.total_steps} optimizer steps, over the "
                              f"policy limit training.limits.max_steps = {limit}",
                              where="recipe")


def _check_resumable(run: RunState) -> None:
    """A resumed run goes on only on the dataset and policy it started with."""
    run.policy_digest = policy_digest(run.policy)
    if not run.resumed:
        return
    if run.state.get("dataset_digest") != run.dataset_digest:
        raise IntegrityError("the dataset changed since the run started",
                             where=str(run.run_dir), hint="start a new run")
    if run.state.get("policy_digest") != run.policy_digest:
        raise PolicyViolation("the active policy changed since the run started",
                              where=str(run.run_dir),
                              hint="start a new run under this policy")
    recorded = (run.state["dataset"].get("eval_dataset") or {}).get("digest")
    if recorded != (run.sacred["digest"] if run.sacred else None):
        raise IntegrityError("the eval dataset changed since the run started",
                             where=str(run.run_dir), hint="start a new run")


def _setup_keys(run: RunState, master_key: bytes) -> None:
    """The run's checkpoint key, when the policy encrypts checkpoints."""
    if run.policy.training.encrypt_checkpoints:
        from appliance.train.sealing import derive_run_key

        run.checkpoint_key = derive_run_key(master_key, run.run_id)


def _record_start(run: RunState, on_event: Callable[[Event], None] | None) -> None:
    """run.json for a new run; the start (or resume) audit event; the console's `run`
    event (it learns the run id before the first step)."""
    model, recipe = run.model, run.recipe
    if not run.resumed:
        run.state = {"run_id": run.run_id, "status": "running", "recipe": recipe.model_dump(),
                     "base_model": {"name": model.name, "root_digest": model.root_digest,
                                    "source_digest": model.source_digest},
                     "dataset": {"name": recipe.dataset,
                                 "train_records": len(run.train_records),
                                 "eval_records": len(run.eval_records),
                                 **({"eval_dataset": {k: run.sacred[k]
                                                      for k in ("name", "digest")},
                                     "eval_dataset_records": len(run.sacred["records"])}
                                    if run.sacred else {})},
                     "dataset_digest": run.dataset_digest,
                     "policy_digest": run.policy_digest, "isolation": run.iso.detail,
                     "total_steps": run.total_steps,
                     "started": _dt.datetime.now(_dt.UTC).isoformat()}
        run.save()
    audit.record(run.home, "train.resume" if run.resumed else "train.start",
                 run_id=run.run_id, base_model=model.root_digest,
                 dataset_digest=run.dataset_digest, policy_digest=run.policy_digest,
                 isolation=run.iso.detail, total_steps=run.total_steps,
                 processes=recipe.processes)
    if on_event is not None:
        on_event({"type": "run", "run_id": run.run_id, "total_steps": run.total_steps,
                  "resume": run.resumed, "processes": recipe.processes})


def _launch(run: RunState, collector: RunCollector, *, relay: Relay,
            echo_child_output: bool) -> isolation.ChildResult:
    """Hand the job to the trainer in the sandbox; its events go to `collector`."""
    if run.adapter_out.exists():
        shutil.rmtree(run.adapter_out)
    # a run killed before its first checkpoint starts again from step 0
    from_step = checkpoint.latest_step(run.run_dir) if run.resumed else None
    run_metrics.rewind(run.metrics, from_step)  # lines after the checkpoint would repeat
    model, recipe, policy = run.model, run.recipe, run.policy
    # absolute paths: the sandbox shows the child these paths alone, at the same place
    job: TrainJob = {"run_id": run.run_id, "run_dir": str(run.run_dir.absolute()),
           "model_dir": str(model.weights_dir.absolute()),
           "recipe": recipe.model_dump(), "train": run.train_records,
           "eval": run.eval_records,
           "checkpoint_key": run.checkpoint_key.hex() if run.checkpoint_key else None,
           "resume": from_step is not None, "adapter_out": str(run.adapter_out.absolute()),
           "general": general.paragraphs(recipe.eval.general_paragraphs),
           "patience": policy.evaluation.patience,
           "min_delta": policy.evaluation.min_delta,
           "inject_nan_at_step": int(os.environ.get(INJECT_NAN_ENV) or 0)}
    if run.sacred:
        job["sacred"] = run.sacred["records"]
    if os.environ.get(EXIT_AT_END_ENV):
        job["exit_at_end"] = [int(v) for v in os.environ[EXIT_AT_END_ENV].split(":", 1)]
    # several machines (appliance.service.cluster): what every node must agree on, this node
    job["fingerprint"] = cluster.fingerprint(recipe, model.root_digest, run.dataset_digest,
                                             run.policy_digest)
    job["node"] = cluster.node(run.home, recipe)
    with cluster.network(policy, recipe) as (network, job["cluster"]):
        spec = isolation.child_spec(read_only=(model.weights_dir,), writable=(run.run_dir,),
                                    network=network)
        result = isolation.run_isolated(dict(job), collector, run.iso, spec=spec, relay=relay,
                                        launch=world_size(recipe) > 1,
                                        echo_output=echo_child_output)
        cluster.audit_drops(run.home, run.run_id, network)
    return result


def _node_done(run: RunState) -> TrainResult:
    """A node other than 0 is done once its workers are: node 0 alone signs the artifact."""
    run.state.update(status="done", finished=_dt.datetime.now(_dt.UTC).isoformat(),
                     signed_by="node 0")
    run.save()
    shutil.rmtree(run.run_dir / "checkpoints", ignore_errors=True)  # as node 0 does
    audit.record(run.home, "train.finish", run_id=run.run_id, signed=False,
                 node_rank=run.recipe.cluster.node_rank)
    return TrainResult(run.run_id, run.run_dir, "", {}, {}, False)


def _check_outcome(run: RunState, collector: RunCollector, result: isolation.ChildResult,
                   relay: Relay) -> dict[str, Event]:
    """How the trainer ended: a guard's stop, a cancel, a kill or a failure raise (each
    audited); an early stop is audited. Returns the held-out numbers "before" and "after"
    training (what the gate, the report and the provenance read)."""
    home, run_id = run.home, run.run_id
    if collector.guard is not None:
        raise _guard_stop(home, run_id, collector.guard)
    # a `stopped` counts only when the trainer ended as stopped: torchrun's agent stops
    # every worker when one fails, and rank 0 then reports `stopped` for that failure
    if collector.stopped is not None and result.returncode == EXIT_STOPPED:
        stopped = collector.stopped
        raise _cancelled(home, run_id, run.total_steps, step=int(stopped.get("step") or 0),
                         checkpoint=bool(stopped.get("checkpoint", True)))
    if relay.requests > 1 and result.returncode != 0:
        raise _cancelled(home, run_id, run.total_steps,
                         step=checkpoint.latest_step(run.run_dir) or 0, checkpoint=False,
                         outcome="killed")
    eval_after = collector.phases.get("eval_after")
    if result.returncode != 0 or eval_after is None:
        last = collector.errors[-1] if collector.errors else None
        why = last["message"] if last else f"trainer exited with status {result.returncode}"
        audit.record(home, "train.failed", outcome="failed", run_id=run_id,
                     error=last["kind"] if last else "exit")
        raise TrainingError(f"training failed: {why}", where=f"run {run_id}",
                            hint=f"run again with --debug to see the trainer's output; "
                                 f"resume with appliance train --resume {run_id}")
    if collector.early_stop is not None:
        early = collector.early_stop
        audit.record(home, "train.early_stop", run_id=run_id, step=early["step"],
                     best_step=early["best_step"], best_loss=early["best_loss"],
                     patience=early["patience"],
                     reason="held-out loss did not improve for "
                            f"{early['patience']} evaluations")
    return {phase: {k: v for k, v in (values or {}).items() if k != "type"}
            for phase, values in (("before", collector.before("eval")), ("after", eval_after))}


def _check_privacy(run: RunState) -> PrivacyResult | None:
    """The canary exposure check on the fresh adapter, before anything is signed."""
    if run.canaries is None:
        return None
    from appliance.service.privacy import before_signing  # docs/privacy.md

    return before_signing(run.home, run.policy, run.canaries, adapter_dir=run.adapter_out,
                          run_dir=run.run_dir, model_dir=run.model.weights_dir,
                          recipe=run.state["recipe"], run_id=run.run_id)


def _guard_stop(home: Home, run_id: str, trip: GuardEvent) -> TrainingError:
    """Audit a guard's stop and build the error that reports it."""
    audit.record(home, "train.guard", outcome="stopped", run_id=run_id, step=trip["step"],
                 reason=trip["kind"], value=trip["value"])
    return TrainingError(f"training stopped by a guard at step {trip['step']}: "
                         f"{trip['message']}", where=f"run {run_id}",
                         hint="lower optim.learning_rate or check the data; nothing was signed")


def _gate(run: RunState, collector: RunCollector, evals: dict[str, Event]) -> dict[str, Any]:
    """The policy's evaluation limits on the run's numbers; refuses a failing run before
    anything is signed (its adapter and checkpoints stay in the run directory)."""
    policy = run.policy
    result = gates.verdict(
        policy.evaluation, eval_before=evals["before"], eval_after=evals["after"],
        general_before=collector.before("general"),
        general_after=collector.phases.get("general_after"), samples=collector.samples,
        format_regex=run.recipe.eval.format_regex, format_schema=run.recipe.eval.format_schema)
    if collector.best is not None:
        result["best"] = {k: collector.best[k] for k in ("step", "final_step", "loss",
                                                         "evaluations", "reason")}
    if collector.early_stop is not None:
        result["early_stop"] = {k: collector.early_stop[k]
                                for k in ("step", "best_step", "patience")}
    result["general_text"] = general.SOURCE
    failed = [c["limit"] for c in result["checks"] if not c["passed"]]
    audit.record(run.home, "train.evaluation", outcome="passed" if not failed else
                 "refused" if policy.evaluation.enforce else "recorded", run_id=run.run_id,
                 failed=failed, checks={c["limit"]: c["value"] for c in result["checks"]})
    if failed and policy.evaluation.enforce:
        run.state.update(status="refused", evaluation=result)
        run.save()
        raise PolicyViolation(f"not signed: {gates.refusal(result)}", where=f"run {run.run_id}",
                              hint=f"the adapter stays in {run.adapter_out} for "
                                   "inspection; lower the learning rate or enable "
                                   "eval.early_stopping")
    return result


def _finish(run: RunState, collector: RunCollector, evals: dict[str, Event],
            evaluation: dict[str, Any], privacy: PrivacyResult | None,
            passphrase: bytes) -> TrainResult:
    """Assemble, sign and move the artifact into place; audit; mark the run done."""
    home, model, run_id, state = run.home, run.model, run.run_id, run.state
    staging = home.artifacts_dir / ".staging" / run_id
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(run.adapter_out / name, staging / name)
    shutil.copy2(run.metrics, staging / "metrics.jsonl")
    artifact.make_portable(staging, model.weights_dir, model.name)
    adapter_digest = "sha256:" + file_sha256(staging / "adapter_model.safetensors")
    # shared by both documents
    checks: dict[str, Any] = {"privacy": privacy} if privacy is not None else {}
    checks["evaluation"] = evaluation
    report = {"run_id": run_id, "recipe": state["recipe"], "base_model": state["base_model"],
              "dataset": state["dataset"], "dataset_digest": state["dataset_digest"],
              "policy_digest": state["policy_digest"], "total_steps": state["total_steps"],
              "eval": evals, "samples": collector.samples, "adapter_sha256": adapter_digest,
              "isolation": run.iso.detail, "resources": collector.resources, **checks}
    if collector.workers:
        report["distributed"] = {"processes": len(collector.workers),
                                 "workers": sorted(collector.workers,
                                                   key=lambda w: int(w.get("rank", 0)))}
    if collector.nodes:
        report.setdefault("distributed", {})["nodes"] = collector.nodes
    atomic_write_text(staging / "report.json", json.dumps(report, indent=2, sort_keys=True))
    finished = _dt.datetime.now(_dt.UTC).isoformat()
    prov = artifact.provenance(
        run_id=run_id, policy_digest=state["policy_digest"],
        model={**state["base_model"], **artifact.base_model_info(model)},
        dataset={"name": state["dataset"]["name"], "digest": state["dataset_digest"],
                 "train_records": state["dataset"]["train_records"],
                 "eval_records": state["dataset"]["eval_records"],
                 **{k: v for k, v in state["dataset"].items()
                    if k in ("eval_dataset", "eval_dataset_records")}},
        tokenizer_digest="sha256:" + model.files.get("tokenizer.json", ""),
        recipe=cluster.recipe_for_provenance(state["recipe"]), isolation=run.iso.detail,
        evals={phase: {k: v for k, v in values.items() if k in ("loss", "perplexity",
                                                                 "records", "tokens")}
               for phase, values in evals.items()},
        adapter_digest=adapter_digest, started=state["started"], finished=finished)
    prov.update(checks)
    if collector.nodes:  # every node of a cluster run, and the cluster policy
        prov["cluster"] = {"nodes": collector.nodes,
                           "policy": cluster.policy_section(run.policy)}
    modelcard.write_card(staging, prov)
    target = home.artifacts_dir / run_id
    artifact.finalize_artifact(home, staging, target, prov, passphrase)
    shutil.rmtree(run.run_dir / "checkpoints", ignore_errors=True)
    shutil.rmtree(run.adapter_out, ignore_errors=True)
    state.update(status="done", artifact=str(target), finished=finished)
    run.save()
    audit.record(home, "train.finish", run_id=run_id, adapter_sha256=adapter_digest,
                 eval_loss_before=evals["before"].get("loss"),
                 eval_loss_after=evals["after"].get("loss"), signed=True, artifact=str(target))
    return TrainResult(run_id, target, adapter_digest, evals["before"], evals["after"], True)


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
