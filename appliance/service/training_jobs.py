"""What the console's Train page needs: the choices, the effective recipe, the runs that can
be resumed, and starting a run as a niced child `appliance train ... --json-events`.

Recipes come from two places: the shipped demo recipe, and `HOME/recipes/*.toml` (an
operator's own recipes; recipes hold settings, never data). Choosing a dataset and a base
model for a recipe makes an *effective recipe*: the recipe with those two keys replaced and
every default filled in, validated on its own (RecipeError, exit 2) and against the active
policy (PolicyViolation naming the recipe key and the policy limit). Starting a run writes it
atomically to `HOME/recipes/effective/` so the run can be repeated with `appliance train
FILE` and the console's run is exactly that command.

Importing this module imports no torch, pydantic or cryptography: the console imports it at
start-up, and every heavy import happens inside the functions, which run in workers.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from appliance import trust
from appliance.errors import RecipeError, UsageError
from appliance.home import Home
from appliance.service.jobs import ChildJob
from appliance.service.train_progress import HistoryPoint, Kind

if TYPE_CHECKING:
    from appliance.service.datasets import DatasetSummary
    from appliance.service.models import ModelListed
    from appliance.train.recipe import Recipe

RECIPES_DIR = "recipes"
"""`HOME/recipes/*.toml`: the operator's recipes, listed after the shipped demo recipe."""

EFFECTIVE_DIR = "effective"
"""`HOME/recipes/effective/`: the effective recipes the console started runs from."""


def recipes_dir(home: Home) -> Path:
    """Where the operator's own recipes live."""
    return home.root / RECIPES_DIR


@dataclass(frozen=True)
class RecipeChoice:
    """One recipe file the operator can train from."""

    label: str
    """What the console shows: `demo (shipped)` or the file's name."""
    path: str
    source: str
    """`shipped` or `home`."""
    dataset: str = ""
    """The dataset the file names (the console preselects it)."""
    base_model: str = ""
    """The base model the file names."""


@dataclass(frozen=True)
class ResumableRun:
    """An interrupted run: started, not finished, resumable with `train --resume RUN`."""

    run_id: str
    recipe: str
    dataset: str
    base_model: str
    checkpoint_step: int | None
    """Step of its newest checkpoint; None: it resumes from step 0 (no checkpoint yet)."""
    total_steps: int
    started: str


@dataclass(frozen=True)
class TrainingChoices:
    """Everything the Train page offers."""

    datasets: list[DatasetSummary]
    """The vault's public summaries (`dataset list`)."""
    models: list[ModelListed]
    """Imported base models with `allowed` (`model list`)."""
    recipes: list[RecipeChoice]
    resumable: list[ResumableRun]


@dataclass(frozen=True)
class EffectiveRecipe:
    """A recipe for one (recipe, dataset, base model), checked against the policy."""

    source: str
    """The recipe file it came from."""
    data: dict[str, Any]
    """Every key, defaults filled in (what `write_effective_recipe` writes)."""
    total_steps: int
    """Optimizer steps the run will make (from the dataset's training-split size)."""
    train_records: int
    text: str
    """The TOML written for the run."""

    @property
    def summary(self) -> str:
        """Two lines: method and steps; the loop's shape, LoRA rank and learning rate."""
        train, lora, optim = self.data["train"], self.data["lora"], self.data["optim"]
        return (f"{self.data['method']} · {self.total_steps} steps over "
                f"{self.train_records} records\nbatch {train['batch_size']} x "
                f"{train['grad_accum']} · seq {train['seq_len']} · rank {lora['rank']} · "
                f"lr {optim['learning_rate']:g}")


def _named(path: Path) -> tuple[str, str]:
    """(dataset, base_model) a recipe file names; blanks when it does not parse (choosing
    it then shows the recipe's problems)."""
    from appliance.train.recipe import read_recipe_data

    try:
        data = read_recipe_data(path)
    except RecipeError:
        return "", ""
    return str(data.get("dataset", "")), str(data.get("base_model", ""))


def recipe_choices(home: Home) -> list[RecipeChoice]:
    """The shipped demo recipe, then `HOME/recipes/*.toml` by name."""
    from appliance.resources import demo_recipe

    shipped = demo_recipe()
    out = [RecipeChoice("demo (shipped)", str(shipped), "shipped", *_named(shipped))]
    folder = recipes_dir(home)
    if folder.is_dir():
        out += [RecipeChoice(p.name, str(p), "home", *_named(p))
                for p in sorted(folder.glob("*.toml")) if p.is_file() and not p.is_symlink()]
    return out


def _run_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((run_dir / "run.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def resumable_runs(home: Home) -> list[ResumableRun]:
    """Runs that started and did not finish, newest first (an unreadable run is skipped:
    `appliance train --resume` names what is wrong with it)."""
    from appliance.train.checkpoint import latest_step

    runs = []
    if not home.runs_dir.is_dir():
        return []
    for run_dir in sorted(home.runs_dir.iterdir(), reverse=True):
        state = _run_state(run_dir) if run_dir.is_dir() else None
        if state is None or state.get("status") == "done":
            continue
        try:
            step = latest_step(run_dir)
        except (OSError, ValueError, KeyError):
            continue
        recipe = state.get("recipe") or {}
        runs.append(ResumableRun(
            run_id=run_dir.name, recipe=str(recipe.get("name", "")),
            dataset=str((state.get("dataset") or {}).get("name", "")),
            base_model=str((state.get("base_model") or {}).get("name", "")),
            checkpoint_step=step, total_steps=int(state.get("total_steps", 0)),
            started=str(state.get("started", ""))[:19].replace("T", " ")))
    return runs


def training_choices(home: Home) -> TrainingChoices:
    """Datasets, base models, recipes and resumable runs (no passphrase needed)."""
    from appliance.service.datasets import list_datasets
    from appliance.service.models import list_models

    return TrainingChoices(list_datasets(home), list_models(home), recipe_choices(home),
                           resumable_runs(home))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (eval.format_schema), keys quoted
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise RecipeError(f"cannot write a {type(value).__name__} value to a recipe")


def recipe_toml(data: dict[str, Any], header: str = "") -> str:
    """A recipe's plain data as TOML: top-level keys, then one table per section."""
    lines = [f"# {line}" for line in header.splitlines()]
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines += [f"{k} = {_toml_value(v)}" for k, v in data.items() if k not in tables]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def _check_steps(recipe: Recipe, train_records: int, limit: int) -> int:
    """The run's optimizer steps, refused the way `appliance train` refuses them."""
    from appliance.errors import PolicyViolation
    from appliance.train.trainer import total_steps

    steps = total_steps(recipe, train_records)
    if steps > limit:
        raise PolicyViolation(f"the recipe makes {steps} optimizer steps, over the policy "
                              f"limit training.limits.max_steps = {limit}", where="recipe",
                              hint="lower train.max_steps or train.epochs")
    return steps


def effective_recipe(home: Home, recipe_path: str | Path, dataset: str,
                     base_model: str) -> EffectiveRecipe:
    """`recipe_path` with its dataset and base model replaced, checked against the active
    policy: RecipeError for a malformed recipe, PolicyViolation for one the policy refuses
    (the recipe key and the limit named), a missing dataset or model, or a model the policy
    does not allow."""
    from appliance.models import store as models
    from appliance.policy import load_policy
    from appliance.train.recipe import check_against_policy, parse_recipe, read_recipe_data
    from appliance.vault import store as vault

    trust.require_home(home)
    path = Path(recipe_path)
    data = read_recipe_data(path)
    data.update(dataset=dataset, base_model=base_model)
    recipe = parse_recipe(data, str(path))
    policy = load_policy(home.policy_file)
    check_against_policy(recipe, policy)
    models.require_allowed(policy, models.read_record(home, base_model))
    info = vault.dataset_info(home, vault.check_name(dataset))
    steps = _check_steps(recipe, info.train_count, policy.training.limits.max_steps)
    plain = recipe.model_dump()
    text = recipe_toml(plain, f"Effective recipe written by the console from {path.name}\n"
                              f"for dataset {dataset!r} and base model {base_model!r}.")
    if parse_recipe(tomllib.loads(text), "effective recipe") != recipe:
        raise RecipeError("the effective recipe does not read back as written", where=str(path))
    return EffectiveRecipe(str(path), plain, steps, info.train_count, text)


def write_effective_recipe(home: Home, effective: EffectiveRecipe) -> Path:
    """Write it atomically as `HOME/recipes/effective/NAME-DATASET-MODEL-HASH.toml` (the
    same content always gets the same file)."""
    from appliance.fsutil import atomic_write_text

    data = effective.data
    digest = hashlib.sha256(effective.text.encode("utf-8")).hexdigest()[:10]
    name = f"{data['name']}-{data['dataset']}-{data['base_model']}-{digest}.toml"
    path = recipes_dir(home) / EFFECTIVE_DIR / name
    atomic_write_text(path, effective.text, mode=0o644)
    return path


def train_job(home: Home, recipe_path: str | Path, passphrase: bytes) -> ChildJob:
    """`appliance train RECIPE --json-events` as a niced child job (not started yet: call
    `start()` on a worker thread, iterate `events()` there, then `wait()`). The passphrase
    reaches the child through an inherited pipe, never argv, the environment or a file."""
    return ChildJob(home, ["train", str(recipe_path), "--json-events"], passphrase=passphrase)


def resume_job(home: Home, run_id: str, passphrase: bytes) -> ChildJob:
    """`appliance train --resume RUN --json-events` as a niced child job (not started)."""
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise UsageError(f"not a run id: {run_id!r}", where=str(home.runs_dir))
    return ChildJob(home, ["train", "--resume", run_id, "--json-events"], passphrase=passphrase)


HISTORY_FIELDS = ("type", "phase", "step", "total_steps", "loss", "perplexity", "lr",
                  "tokens_per_s")
"""What `run_history` keeps of each metrics line: numbers only."""


def run_history(home: Home, run_id: str) -> list[HistoryPoint]:
    """The step and eval events an interrupted run recorded up to its newest checkpoint
    (HOME/runs/RUN/metrics.jsonl), so a resumed run's curves continue where they were."""
    from appliance.train.checkpoint import latest_step

    run_dir = home.runs_dir / run_id
    upto = latest_step(run_dir) or 0
    out: list[HistoryPoint] = []
    try:
        lines = (run_dir / "metrics.jsonl").read_text("utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("type") not in (Kind.STEP, Kind.EVAL):
            continue
        if event["type"] == Kind.STEP and int(event.get("step", 0)) > upto:
            continue
        if event["type"] == Kind.EVAL and event.get("phase") != "before":
            continue
        # the keys are HistoryPoint's, picked from a JSON line: a checked TypedDict cannot be
        # built from a key loop
        out.append(cast(HistoryPoint, {k: event[k] for k in HISTORY_FIELDS if k in event}))
    return out
