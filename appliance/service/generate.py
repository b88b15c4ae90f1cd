"""Trying a signed adapter: `appliance generate ARTIFACT --prompts FILE [--compare-base]`.

The parent verifies the artifact's signature, checks the base model it names (allowed by
the policy, weights unchanged since import) and reads the prompts; the model runs in the
trainer's isolated child (appliance.train.generate: no network, no torch in this process).
Every answer is scanned by the PII detector before it is returned: detected identifiers are
masked as `<ENTITY_TYPE>` and counted in the audit log (counts only, never text).
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from appliance import audit, trust
from appliance.errors import DatasetFormatError, IntegrityError, TrainingError, UsageError
from appliance.home import Home
from appliance.models import store
from appliance.policy import Policy, load_policy
from appliance.train import isolation
from appliance.train.data import ROLES

if TYPE_CHECKING:
    from appliance.service.artifacts import Verified

Conversation = list[dict[str, str]]


class Answer(TypedDict):
    """One answered prompt (`appliance generate --json`, one line each; `appliance chat`),
    answers PII-masked."""

    prompt: str
    """The conversation's last user message."""
    adapter: str
    base: NotRequired[str]
    """The base model's answer, with `--compare-base`."""

MAX_PROMPTS = 1000
MAX_PROMPTS_BYTES = 8 * 1024 * 1024


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


STDIN = "-"
"""The prompts file name that means standard input (the console's Try page sends its prompt
through a pipe: never on disk, never in argv)."""


def read_prompts(path: str | Path) -> list[Conversation]:
    """The conversations of a JSONL prompts file, or of standard input for `-`
    (DatasetFormatError naming the line)."""
    if str(path) == STDIN:
        try:
            text = sys.stdin.read(MAX_PROMPTS_BYTES + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetFormatError(f"cannot read the prompts: {exc}",
                                     where="standard input") from None
        return parse_prompts(text, "standard input")
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise UsageError("prompts file not found", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"cannot read the prompts file: {exc}", where=str(path)) \
            from None
    return parse_prompts(text, str(path))


def parse_prompts(text: str, name: str) -> list[Conversation]:
    """The conversations of JSONL `text` read from `name`."""
    if len(text) > MAX_PROMPTS_BYTES:
        raise DatasetFormatError(f"the prompts are larger than {MAX_PROMPTS_BYTES} bytes",
                                 where=name)
    lines = text.splitlines()
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise DatasetFormatError("not valid JSON", where=f"{name}:{number}") from None
        out.append(_conversation(value, f"{name}:{number}"))
    if not out or len(out) > MAX_PROMPTS:
        raise DatasetFormatError(f"give between 1 and {MAX_PROMPTS} prompts", where=name)
    return out


def _artifact_model(home: Home, policy: Policy, artifact: Path, verdict: Verified,
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


class _Model:
    """One isolated model process serving a verified artifact: the batch prompts of the job,
    then (interactive) more from `more_input`; answers arrive PII-masked by the child."""

    def __init__(self, home: Home, artifact: str | Path, *, compare_base: bool,
                 max_new_tokens: int) -> None:
        trust.require_home(home)
        self.home = home
        self.policy = load_policy(home.policy_file)
        self.artifact = Path(artifact).absolute()
        self.compare_base = compare_base
        self.max_new_tokens = max_new_tokens
        self.iso = isolation.require_isolation()
        self.masked: Counter[str] = Counter()
        self.asked = 0
        self.answers = 0
        self.errors: list[str] = []

    def run(self, prompts: list[Conversation], on_row: Callable[[dict[str, Any]], None], *,
            more_input: Iterable[dict[str, Any]] | None = None,
            verified: tuple[Path, dict[str, Any]] | None = None) -> None:
        """Verify and check (unless `verified` holds the checked copy and its job), run the
        child, audit; TrainingError when the child fails."""
        from appliance.service.artifacts import verified_copy

        self.asked += len(prompts)

        def handle(event: dict[str, Any]) -> None:
            kind = event.get("type")
            if kind == "tripwire":
                isolation.audit_tripwire(self.home, f"generate-{self.artifact.name}", event)
            elif kind == "error":
                self.errors.append(str(event.get("message", "")))
            elif kind == "answer":
                self.answers += 1
                self.masked.update({str(k): int(v) for k, v in
                                    dict(event.get("masked") or {}).items()})
                on_row(event)

        if verified is None:
            with verified_copy(self.home, self.artifact) as (copy, verdict):
                job = self.check(copy, verdict)
                result = self._child(prompts, handle, more_input, copy, job)
        else:
            copy, job = verified
            result = self._child(prompts, handle, more_input, copy, job)
        self.finish(result.returncode)

    def check(self, copy: Path, verdict: Verified) -> dict[str, Any]:
        """The job of the verified copy (raises when it does not verify or the base
        model is not the one it was trained on)."""
        report, model = _artifact_model(self.home, self.policy, self.artifact, verdict, copy)
        return {"kind": "generate", "model_dir": str(model.weights_dir.absolute()),
                "adapter_dir": str(copy.absolute()), "recipe": report["recipe"],
                "policy": self.policy.model_dump(mode="json"),
                "compare_base": self.compare_base, "max_new_tokens": self.max_new_tokens}

    def _child(self, prompts: list[Conversation], handle: Callable[[dict[str, Any]], None],
               more_input: Iterable[dict[str, Any]] | None,
               copy: Path, job: dict[str, Any]) -> isolation.ChildResult:
        # the model reads only a verified private copy of the artifact, in the sandbox
        job = dict(job)
        job.update(prompts=prompts, interactive=more_input is not None)
        spec = isolation.child_spec(read_only=(Path(job["model_dir"]), copy.absolute()))
        return isolation.run_isolated(job, handle, self.iso, spec=spec, more_input=more_input)

    def finish(self, returncode: int) -> None:
        """Audit what was asked and masked (counts only); TrainingError on a failure."""
        audit.record(self.home, "generate", outcome="ok" if returncode == 0 else "failed",
                     artifact=self.artifact.name, prompts=self.asked, answers=self.answers,
                     compare_base=self.compare_base, pii_masked=dict(self.masked))
        if returncode != 0:
            why = self.errors[-1] if self.errors else \
                f"the model process exited with status {returncode}"
            raise TrainingError(f"generation failed: {why}", where=str(self.artifact),
                                hint="run again with --debug")


def _row(conversation: Conversation, event: dict[str, Any]) -> Answer:
    row: Answer = {"prompt": conversation[-1]["content"], "adapter": str(event["adapter"])}
    if "base" in event:
        row["base"] = str(event["base"])
    return row


def generate(home: Home, artifact: str | Path, prompts: list[Conversation], *,
             compare_base: bool = False, max_new_tokens: int = 64,
             on_answer: Callable[[Answer], None] | None = None) -> list[Answer]:
    """One row per prompt: `prompt` (its last user message), `adapter` and, with
    `compare_base`, `base`; answers PII-masked. `on_answer` sees each row as it comes."""
    model = _Model(home, artifact, compare_base=compare_base, max_new_tokens=max_new_tokens)
    rows: list[Answer] = []

    def collect(event: dict[str, Any]) -> None:
        row = _row(prompts[int(event["index"])], event)
        rows.append(row)
        if on_answer is not None:
            on_answer(row)

    model.run(prompts, collect)
    return rows


_END = object()


class ChatSession:
    """One isolated model process for a whole conversation (`appliance chat`): the artifact
    is verified when the session opens, the model loads once, each `ask` sends one prompt
    over the child's stdin and waits for its (PII-masked) answer. Use as a context manager;
    leaving it closes the child's stdin, the child ends, the session is audited."""

    def __init__(self, home: Home, artifact: str | Path, *, compare_base: bool = False,
                 max_new_tokens: int = 64) -> None:
        self.model = _Model(home, artifact, compare_base=compare_base,
                            max_new_tokens=max_new_tokens)
        self._prompts: queue.Queue[Any] = queue.Queue()
        self._answers: queue.Queue[Any] = queue.Queue()
        self._stack = contextlib.ExitStack()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> ChatSession:
        from appliance.service.artifacts import verified_copy

        with contextlib.ExitStack() as stack:
            copy, verdict = stack.enter_context(verified_copy(self.model.home,
                                                              self.model.artifact))
            job = self.model.check(copy, verdict)  # refused here, before the first prompt
            self._stack = stack.pop_all()
        self._thread = threading.Thread(target=self._serve, args=((copy, job),),
                                        name="chat-model", daemon=True)
        self._thread.start()
        return self

    def _serve(self, verified: tuple[Path, dict[str, Any]]) -> None:
        def more() -> Iterator[dict[str, Any]]:
            while (item := self._prompts.get()) is not _END:
                yield item

        try:
            self.model.run([], self._answers.put, more_input=more(), verified=verified)
        except BaseException as exc:  # handed to the caller's next ask() or to __exit__
            self._failure = exc
        finally:
            self._answers.put(_END)

    def ask(self, conversation: Conversation) -> Answer:
        """The row (prompt, adapter[, base]) answering the conversation's last user message;
        TrainingError when the model process has failed."""
        if self._thread is None or not self._thread.is_alive():
            raise self._failure or TrainingError("the chat's model process has ended")
        self.model.asked += 1
        self._prompts.put({"index": self.model.asked - 1, "messages": conversation})
        event = self._answers.get()
        if event is _END:
            raise self._failure or TrainingError("the chat's model process has ended")
        return _row(conversation, event)

    def __exit__(self, *exc_info: object) -> None:
        self._prompts.put(_END)
        if self._thread is not None:
            self._thread.join()
        self._stack.close()
        if self._failure is not None and exc_info[0] is None:
            raise self._failure
