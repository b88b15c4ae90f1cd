"""Benchmark of the operator console: start-up to the first usable page, and key-press
latency while long work runs.

Start-up: a fresh interpreter runs the console headless (Textual's run_test); the time from
before the child is spawned until the Overview is mounted and has answered its first key
press (switching to Policy). Median of several runs; also checks torch was never imported.

Latency: from sending a key (through the driver, as Pilot does) until the page has
switched, median of 20 presses alternating two pages, in these situations:
  idle       no work running (the baseline);
  job        a thread worker watching CPU-bound child processes, one per core, at nice 10:
             how training and scrubbing run beside the console;
  job-nice0  the same children at normal priority;
  gil        a thread worker computing in pure Python in the console's own interpreter (the
             worst case), with the console's 0.2 ms GIL switch interval;
  gil-5ms    the same with CPython's default 5 ms switch interval, to show why it is set;
  train      a REAL QLoRA run started from the Train page (key 5, s, the passphrase typed
             into its modal): `appliance train --json-events` in a niced child, the isolated
             trainer on every core, its events read by the page's worker and drawn as they
             come; presses alternate Policy and Overview once the first step is reported;
  train-page the same run, presses alternating Train (its plots redrawn) and Policy.
  try        a REAL signed adapter asked from the Try page (key 8, a prompt typed, enter):
             `appliance generate --prompts - --compare-base --json` in a niced child, the
             model loading and answering (base and adapter) in the sandbox on every core;
             presses alternate Try and Policy while it generates (a new prompt is asked
             whenever an answer is complete; only presses made while a child ran count).
The training presses are 0.3 s apart (not 0.05 s), so that they span several steps.
The run is then cancelled with c (checkpoint at the next step boundary). Its home is real:
init under the demo policy, the default base model imported (about 30 s), synthetic chat
records encrypted in the vault; the Try situation's adapter is a 2-step run of the same
data, trained (and signed) before the console starts. `--no-train` leaves the training and
Try situations out; `--no-try` leaves the Try situation out. `--try-home HOME` measures only
the idle baseline and the Try situation, on an existing home's newest signed artifact.

The last line is one JSON object: ours = median latency while the real training run trains
(the synthetic `job` when training is left out), baseline = median latency idle, ratio =
baseline / ours (1.0 means the training costs no responsiveness).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PRESSES = 20
STARTUP_RUNS = 5
TARGET_MS = 100.0
STARTUP_TARGET_MS = 1000.0
BURN = "import time\nend = time.time() + 120\nwhile time.time() < end:\n    sum(range(10000))\n"

STARTUP_CHILD = """
import asyncio, sys, time
from pathlib import Path
from textual import events
from appliance.home import Home
from appliance.tui.app import ApplianceConsole
from appliance.tui.screens.policy import PolicyScreen

async def main() -> None:
    app = ApplianceConsole(Home(Path(sys.argv[1])))
    async with app.run_test(size=(120, 36)):
        event = events.Key("2", "2")
        event.set_sender(app)
        app._driver.send_message(event)  # as Pilot does, without its wait for an idle CPU
        while not isinstance(app.screen, PolicyScreen):
            await asyncio.sleep(0.001)
        print("READY", time.monotonic(), flush=True)
        print("CPU", time.process_time(), flush=True)
        heavy = sorted({"torch", "transformers", "presidio_analyzer", "spacy"} & set(sys.modules))
        print("HEAVY", ",".join(heavy) or "-", flush=True)

asyncio.run(main())
"""


def startup_ms(home: Path) -> tuple[float, float, bool]:
    """Milliseconds from spawn to the first key answered on the Overview (wall clock, and
    the child's CPU time, which a busy machine inflates less); was torch imported?"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", STARTUP_CHILD, str(home)], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    fields = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return ((float(fields["READY"]) - start) * 1000, float(fields["CPU"]) * 1000,
            fields.get("HEAVY", "-") != "-")


def _watch_children(stop: threading.Event, nice: int) -> None:
    prefix = ["nice", "-n", str(nice)] if nice else []
    children = [subprocess.Popen([*prefix, sys.executable, "-c", BURN])
                for _ in range(os.cpu_count() or 1)]
    try:
        while not stop.wait(0.05):
            pass
    finally:
        for child in children:
            child.kill()
            child.wait()


def _compute(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(2000))


async def _press(app: Any, key: str, page: type) -> float:
    from textual import events

    start = time.perf_counter()
    event = events.Key(key, key)
    event.set_sender(app)
    app._driver.send_message(event)
    while not isinstance(app.screen, page):
        await asyncio.sleep(0.0005)
    return (time.perf_counter() - start) * 1000


async def latencies(home: Path, situation: str) -> list[float]:
    """Key-press latencies (ms) in one situation."""
    import appliance.tui.app as console
    from appliance.home import Home
    from appliance.tui.screens.overview import OverviewScreen
    from appliance.tui.screens.policy import PolicyScreen

    console.SWITCH_INTERVAL_S = 0.005 if situation == "gil-5ms" else 0.0002
    app = console.ApplianceConsole(Home(home))
    stop = threading.Event()
    out: list[float] = []
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")
        await pilot.press("1")
        await app.workers.wait_for_complete()
        current: Any = app.screen
        if situation.startswith("job"):
            current.run_service("job", _watch_children, stop,
                                0 if situation == "job-nice0" else 10)
        elif situation.startswith("gil"):
            current.run_service("work", _compute, stop)
        await asyncio.sleep(0.5)
        for i in range(PRESSES):
            key, page = ("2", PolicyScreen) if i % 2 == 0 else ("1", OverviewScreen)
            out.append(await _press(app, key, page))
            await asyncio.sleep(0.05)
        stop.set()
        await app.workers.wait_for_complete()
    return out


TRAIN_PASSPHRASE = b"tui benchmark passphrase"
TRAIN_RECIPE = """# the tui benchmark's run: it outlasts the presses, then is cancelled
name = "bench"
base_model = "smollm2-135m-instruct"
dataset = "bench"
seed = 0

[lora]
rank = 8
alpha = 16
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]

[train]
max_steps = 60
batch_size = 4
seq_len = 128
checkpoint_every = 100

[eval]
max_records = 8
generations = 0
"""


def training_home(root: Path) -> Path:
    """A real home for the training situations: the demo policy, the default base model
    imported, 96 synthetic chat records (no PII) encrypted in the vault, one recipe."""
    from appliance import trust
    from appliance.home import Home
    from appliance.models import importer
    from appliance.policy import load_policy
    from appliance.resources import shipped_policy
    from appliance.service.home import init_home
    from appliance.service.models import record_model
    from appliance.vault.store import write_dataset

    home = Home(root)
    init_home(home, TRAIN_PASSPHRASE, shipped_policy("demo"))
    policy = load_policy(home.policy_file)
    importer.import_model(home, policy, importer.default_gguf(), importer.DEFAULT_NAME)
    record_model(home, importer.DEFAULT_NAME, TRAIN_PASSPHRASE)  # training needs the record
    records = [{"messages": [{"role": "user", "content": f"What is item {i} made of?"},
                             {"role": "assistant", "content": f"Item {i} is made of "
                              f"{('oak', 'steel', 'glass', 'clay')[i % 4]}, batch {i * 7}."}]}
               for i in range(96)]
    key = trust.unlock(home, TRAIN_PASSPHRASE, policy)
    write_dataset(home, policy, key, "bench", records[:88], records[88:], {})
    (root / "recipes").mkdir()
    (root / "recipes" / "bench.toml").write_text(TRAIN_RECIPE)
    return root


TRY_RECIPE = TRAIN_RECIPE.replace('name = "bench"', 'name = "bench-try"').replace(
    "max_steps = 60", "max_steps = 2")
TRY_PROMPT = "What is item 5 made of? Answer in one sentence."


def train_try_adapter(home: Path) -> str:
    """A 2-step adapter of the bench data, trained and signed (the Try page's artifact)."""
    from appliance.home import Home
    from appliance.passphrase import read_passphrase
    from appliance.service.train import train

    recipe = home / "recipes" / "bench-try.toml"
    recipe.write_text(TRY_RECIPE)
    secret = home.parent / "bench-passphrase"
    secret.write_bytes(TRAIN_PASSPHRASE)
    secret.chmod(0o600)
    return train(Home(home), recipe, passphrase=read_passphrase(str(secret))).run_id


async def try_latencies(home: Path, run_id: str) -> dict[str, list[float]]:
    """Key-press latencies (ms) while the Try page's generate child loads the model and
    answers: presses alternate Try and Policy; a new prompt whenever one is answered."""
    import appliance.tui.app as console
    from appliance.home import Home
    from appliance.tui.screens.policy import PolicyScreen
    from appliance.tui.screens.tryout import TryScreen

    console.SWITCH_INTERVAL_S = 0.0002
    app = console.ApplianceConsole(Home(home))
    out: list[float] = []
    asked = answered = 0
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")
        await pilot.press("8")
        await app.workers.wait_for_complete()
        screen: Any = app.screen
        assert isinstance(screen, TryScreen)
        choice: Any = screen.query_one("#try-artifact")
        end = time.monotonic() + 60
        while choice.value != run_id:
            if time.monotonic() > end:
                raise RuntimeError(f"the Try page does not offer {run_id}: "
                                   f"{screen.banner.text} ({choice.value})")
            await asyncio.sleep(0.2)
        deadline = time.monotonic() + 900
        i = 0
        while len(out) < PRESSES and time.monotonic() < deadline:
            if not screen.generating:
                answered = len(screen.exchanges)
                if asked and answered < asked:
                    raise RuntimeError(f"no answer: {screen.banner.text}")
                if not isinstance(app.screen, TryScreen):
                    await _press(app, "8", TryScreen)
                screen.query_one("#try-prompt").focus()
                for char in TRY_PROMPT:
                    await pilot.press("space" if char == " " else char)
                await pilot.press("enter")
                await pilot.press("escape")
                asked += 1
                await asyncio.sleep(1.0)  # the child is spawned and loading
                continue
            key, page = (("2", PolicyScreen), ("8", TryScreen))[i % 2]
            i += 1
            ms = await _press(app, key, page)
            if screen.generating:
                out.append(ms)
            await asyncio.sleep(TRAIN_GAP_S)
        while screen.generating:
            await asyncio.sleep(0.2)
        answered = len(screen.exchanges)
    return {"try": out, "_asked": [float(asked)], "_answered": [float(answered)]}


async def _start_training(app: Any, pilot: Any) -> Any:
    """On the Train page: choose the bench recipe, s, the passphrase typed into the modal;
    wait for the first training step. Returns the page."""
    from appliance.tui.screens.train import TrainScreen
    from appliance.tui.widgets.passphrase import PassphraseModal

    await pilot.press("5")
    await app.workers.wait_for_complete()
    screen = app.screen
    assert isinstance(screen, TrainScreen)
    assert screen.choices is not None
    recipe = next(r.path for r in screen.choices.recipes if r.path.endswith("bench.toml"))
    screen.query_one("#recipe").value = recipe  # type: ignore[attr-defined]
    await app.workers.wait_for_complete()
    await pilot.press("s")
    while not isinstance(app.screen, PassphraseModal):
        await asyncio.sleep(0.05)
    for char in TRAIN_PASSPHRASE.decode():
        await pilot.press("space" if char == " " else char)
    await pilot.press("enter")
    deadline = time.monotonic() + 300
    while not (screen.progress and screen.progress.losses):
        if not screen.running or time.monotonic() > deadline:
            raise RuntimeError("the training run did not reach its first step: "
                               f"{screen.banner.text or 'timed out'}")
        await asyncio.sleep(0.1)
    return screen


TRAIN_GAP_S = 0.3
"""Pause between presses while training, so the presses span several training steps (and
the page's redraws for their events)."""


async def _presses(app: Any, pages: tuple[tuple[str, type], tuple[str, type]]) -> list[float]:
    out = []
    for i in range(PRESSES):
        key, page = pages[i % 2]
        out.append(await _press(app, key, page))
        await asyncio.sleep(TRAIN_GAP_S)
    return out


async def training_latencies(home: Path) -> dict[str, list[float]]:
    """Key-press latencies (ms) while a real training run trains: switching Policy and
    Overview, then Train and Policy; then the run is cancelled from the page with c."""
    import appliance.tui.app as console
    from appliance.home import Home
    from appliance.tui.screens.overview import OverviewScreen
    from appliance.tui.screens.policy import PolicyScreen
    from appliance.tui.screens.train import TrainScreen

    console.SWITCH_INTERVAL_S = 0.0002
    app = console.ApplianceConsole(Home(home))
    out: dict[str, list[float]] = {}
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")  # every page is mounted before anything is timed
        await pilot.press("1")
        await app.workers.wait_for_complete()
        screen = await _start_training(app, pilot)
        steps_before = len(screen.progress.losses)
        out["train"] = await _presses(app, (("2", PolicyScreen), ("1", OverviewScreen)))
        out["train-page"] = await _presses(app, (("5", TrainScreen), ("2", PolicyScreen)))
        out["_steps"] = [float(steps_before), float(len(screen.progress.losses))]
        await _press(app, "5", TrainScreen)
        await pilot.press("c")
        deadline = time.monotonic() + 300
        while screen.running and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        out["_stopped"] = [1.0 if screen.progress.phase == "stopped" else 0.0]
    return out


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_ms": round(statistics.median(ordered), 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
            "max_ms": round(ordered[-1], 1)}


def try_only(home: Path) -> None:
    """The idle baseline and the Try situation on an existing home's newest signed artifact
    (`--try-home`: no training, no start-up runs)."""
    from appliance.home import Home
    from appliance.service.artifacts import list_artifacts
    from appliance.tui.screens import overview

    overview.doctor = lambda _home: []
    signed = [r["run"] for r in list_artifacts(Home(home)) if r["signed"] == "yes"]
    if not signed:
        raise SystemExit(f"no signed artifact in {home}")
    idle = _summary(asyncio.run(latencies(home, "idle")))
    started = time.monotonic()
    tried = asyncio.run(try_latencies(home, str(signed[0])))
    results = {"idle": idle, "try": _summary(tried["try"])}
    print(f"{'situation':<10} {'median':>8} {'p90':>8} {'max':>8}   (ms)")
    for situation, figures in results.items():
        print(f"{situation:<10} {figures['median_ms']:>8} {figures['p90_ms']:>8} "
              f"{figures['max_ms']:>8}")
    ours, baseline = results["try"]["median_ms"], idle["median_ms"]
    print(json.dumps({
        "name": "tui", "unit": "ms", "ours": ours, "baseline": baseline,
        "ratio": round(baseline / ours, 3) if ours else None, "target_ms": TARGET_MS,
        "metric": "median key-press latency while the Try page's generate child loads the "
                  "model and answers (baseline: idle)", "latency": results,
        "try": {"asked": int(tried["_asked"][0]), "answered": int(tried["_answered"][0]),
                "presses": len(tried["try"]),
                "situation_s": round(time.monotonic() - started, 1)},
        "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }, sort_keys=True))


def main() -> None:
    """Measure, print a table, then the JSON line."""
    parser = argparse.ArgumentParser(description="the operator console's benchmark")
    parser.add_argument("--no-train", action="store_true",
                        help="leave out the situations with a real training run (and Try)")
    parser.add_argument("--no-try", action="store_true",
                        help="leave out the Try page situation (a real adapter answering)")
    parser.add_argument("--try-home", metavar="HOME", default=None,
                        help="only the idle baseline and the Try situation, on this existing "
                             "home and its newest signed artifact (no training)")
    args = parser.parse_args()
    # The Overview's doctor runs a ~5 s torch probe in a child process; it is real in the
    # start-up runs but left out of the latency runs so every situation starts equal.
    training: dict[str, Any] = {}
    if args.try_home:
        try_only(Path(args.try_home))
        return
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        runs = [startup_ms(home) for _ in range(STARTUP_RUNS)]
        startup = statistics.median(ms for ms, _, _ in runs)
        startup_cpu = statistics.median(cpu for _, cpu, _ in runs)
        torch_loaded = any(heavy for _, _, heavy in runs)
        from appliance.tui.screens import overview

        overview.doctor = lambda _home: []
        results = {}
        for situation in ("idle", "job", "job-nice0", "gil", "gil-5ms"):
            results[situation] = _summary(asyncio.run(latencies(home, situation)))
        if not args.no_train:
            started = time.monotonic()
            found = asyncio.run(training_latencies(training_home(Path(tmp) / "train-home")))
            for situation in ("train", "train-page"):
                results[situation] = _summary(found[situation])
            training = {"steps_before_and_after_presses": found["_steps"],
                        "cancelled_cleanly": bool(found["_stopped"][0]),
                        "situation_s": round(time.monotonic() - started, 1)}
            if not args.no_try:
                started = time.monotonic()
                run_id = train_try_adapter(Path(tmp) / "train-home")
                trained = time.monotonic() - started
                tried = asyncio.run(try_latencies(Path(tmp) / "train-home", run_id))
                results["try"] = _summary(tried["try"])
                training["try"] = {"asked": int(tried["_asked"][0]),
                                   "answered": int(tried["_answered"][0]),
                                   "adapter_trained_s": round(trained, 1),
                                   "situation_s": round(time.monotonic() - started
                                                        - trained, 1)}
    print(f"start-up to first usable page: median {startup:.0f} ms wall, {startup_cpu:.0f} ms "
          f"CPU over {STARTUP_RUNS} runs (target {STARTUP_TARGET_MS:.0f} ms); heavy imports: "
          f"{torch_loaded}")
    print(f"{'situation':<10} {'median':>8} {'p90':>8} {'max':>8}   (ms, {PRESSES} presses)")
    for situation, figures in results.items():
        print(f"{situation:<10} {figures['median_ms']:>8} {figures['p90_ms']:>8} "
              f"{figures['max_ms']:>8}")
    if training:
        print(f"training run: steps {training['steps_before_and_after_presses']} before and "
              f"after the presses; cancelled cleanly: {training['cancelled_cleanly']}")
        if "try" in training:
            print(f"try page: {training['try']['asked']} prompts asked, "
                  f"{training['try']['answered']} answered during the presses")
    real = "train" in results
    ours = results["train" if real else "job"]["median_ms"]
    baseline = results["idle"]["median_ms"]
    metric = ("median key-press latency while a real QLoRA run started from the Train page "
              "trains (baseline: idle)" if real else
              "median key-press latency with a CPU-bound job running (baseline: idle)")
    print(json.dumps({
        "name": "tui", "unit": "ms", "ours": ours, "baseline": baseline,
        "ratio": round(baseline / ours, 3) if ours else None, "target_ms": TARGET_MS,
        "metric": metric, "startup_ms": round(startup, 1),
        "startup_cpu_ms": round(startup_cpu, 1), "startup_target_ms": STARTUP_TARGET_MS,
        "startup_imports_torch": torch_loaded, "latency": results, "training": training,
        "try_ms": results.get("try", {}).get("median_ms"),
        "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }, sort_keys=True))


if __name__ == "__main__":
    main()
