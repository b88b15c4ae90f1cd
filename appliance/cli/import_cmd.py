"""`appliance dataset import FILE --name NAME [--json | --json-events]`.

The vault owns the `dataset` command group (list/show/sample/rm in dataset_cmd.py). This
module adds only the `import` action: dataset_cmd.py calls `add_import_action`.

`--json-events` is for the console (appliance.service.jobs.ChildJob): one JSON object per
line on stdout, `{"type": "progress", "stage", "done", "total"}` while it works (stages
read, scrub, residual, write) and `{"type": "report", "report": {...}}` as the last line.
Progress carries counts only, never record text.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from appliance.cli._common import add_command, home_of, output, passphrase, print_json
from appliance.errors import EXIT_OK

if TYPE_CHECKING:
    from appliance.service.scrub import ImportReport

EVENT_INTERVAL_S = 0.1
"""Least time between two progress events of one stage (its first and last always go)."""


def _progress(stage: str, done: int, total: int) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{stage}: {done}/{total}   ")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


class JsonProgress:
    """Progress callbacks as JSON-line events, at most one per EVENT_INTERVAL_S per stage."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Emit `{"type": "progress", ...}` unless the stage reported moments ago."""
        now = time.monotonic()
        first = stage not in self.last
        if not first and done < total and now - self.last[stage] < EVENT_INTERVAL_S:
            return
        self.last[stage] = now
        print_json({"type": "progress", "stage": stage, "done": done, "total": total})


def _import(args: argparse.Namespace) -> int:
    from appliance.service.scrub import import_dataset

    progress = JsonProgress() if args.json_events else _progress
    report = import_dataset(home_of(args), args.file, args.name,
                            passphrase=passphrase(args), progress=progress,
                            canaries=True if getattr(args, "canaries", False) else None,
                            columns=getattr(args, "columns", None),
                            eval_only=bool(getattr(args, "eval_only", False)))
    if args.json_events:
        print_json({"type": "report", "report": report})
    else:
        output(args, report, lambda: _print_report(report))
    return EXIT_OK


def _print_report(report: ImportReport) -> None:
    split = "eval only: training can never read it" if report.get("eval_only") else \
        f"{report['train']} train, {report['eval']} eval"
    print(f"{report['name']}: {report['records_out']} of {report['records_in']} records "
          f"imported ({split}), {report['rejected']} "
          f"rejected, {report['quarantined']} quarantined, {report['duplicates']} duplicates")
    pii = ", ".join(f"{k} {v}" for k, v in report["pii"].items()) or "none"
    print(f"PII replaced: {pii}")
    print(f"residual after scrubbing: {report['residual'] or 'none'}")
    if report.get("scrubber_limits"):
        limits = report["scrubber_limits"]
        print(f"the scrubber can still miss: {'; '.join(limits['can_miss'])}")
        print(f"measured: {limits['measured']} ({limits['details']})")
    if not report["ner"]["detects_names_and_places"]:
        print(f"WARNING: {report['ner']['warning']}")
    if report.get("canaries"):
        c = report["canaries"]
        print(f"canaries: {c['planted']} planted (x{c['repeats']}), {c['controls']} controls, "
              f"{c['secrets_surviving_scrub']} surviving scrubbing")
    print(f"digest {report['digest']}")


def add_import_action(actions: Any, common: argparse.ArgumentParser) -> None:
    """Add `import` to the `dataset` group's sub-parsers."""
    parser = add_command(actions, common, "import", "validate, deduplicate, scrub, split and "
                         "encrypt a dataset into the vault")
    parser.add_argument("file", help="JSONL, JSON array, Parquet, CSV or a datasets "
                                     "save_to_disk directory; Alpaca, chat or ShareGPT records")
    parser.add_argument("--name", required=True, help="the dataset's name in the vault")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the report as JSON")
    output.add_argument("--json-events", action="store_true",
                        help="print progress as JSON lines, then the report as the last line")
    parser.add_argument("--canaries", action="store_true",
                        help="plant privacy canaries before scrubbing (as "
                             "privacy.plant_canaries = true does)")
    parser.add_argument("--eval-only", action="store_true",
                        help="every record is held out and training can never read this "
                             "dataset: a sacred evaluation set (a recipe's eval.dataset)")
    parser.add_argument("--columns", metavar="MAP", default=None,
                        help="ShareGPT-like column mapping, e.g. turns=dialog,from=speaker,"
                             "value=text,bot=assistant (defaults: conversations, from, value)")
    parser.set_defaults(handler=_import)
