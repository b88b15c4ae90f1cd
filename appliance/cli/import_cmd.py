"""`appliance dataset import FILE --name NAME [--json]`.

The vault owns the `dataset` command group (list/show/sample/rm in dataset_cmd.py). This
module adds only the `import` action: dataset_cmd.py calls `add_import_action`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.cli._common import add_command, home_of, passphrase_file, print_json
from appliance.errors import EXIT_OK


def _progress(stage: str, done: int, total: int) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{stage}: {done}/{total}   ")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _import(args: argparse.Namespace) -> int:
    from appliance.service.scrub import import_dataset

    report = import_dataset(home_of(args), args.file, args.name,
                            passphrase_file=passphrase_file(args), progress=_progress,
                            canaries=True if getattr(args, "canaries", False) else None)
    if args.json:
        print_json(report)
        return EXIT_OK
    print(f"{report['name']}: {report['records_out']} of {report['records_in']} records "
          f"imported ({report['train']} train, {report['eval']} eval), {report['rejected']} "
          f"rejected, {report['quarantined']} quarantined, {report['duplicates']} duplicates")
    pii = ", ".join(f"{k} {v}" for k, v in report["pii"].items()) or "none"
    print(f"PII replaced: {pii}")
    print(f"residual after scrubbing: {report['residual'] or 'none'}")
    if not report["ner"]["detects_names_and_places"]:
        print(f"WARNING: {report['ner']['warning']}")
    if report.get("canaries"):
        c = report["canaries"]
        print(f"canaries: {c['planted']} planted (x{c['repeats']}), {c['controls']} controls, "
              f"{c['secrets_surviving_scrub']} surviving scrubbing")
    print(f"digest {report['digest']}")
    return EXIT_OK


def add_import_action(actions: Any, common: argparse.ArgumentParser) -> None:
    """Add `import` to the `dataset` group's sub-parsers."""
    parser = add_command(actions, common, "import", "validate, deduplicate, scrub, split and "
                         "encrypt a dataset into the vault")
    parser.add_argument("file", help="JSONL or JSON array, Alpaca or chat records")
    parser.add_argument("--name", required=True, help="the dataset's name in the vault")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--canaries", action="store_true",
                        help="plant privacy canaries before scrubbing (as "
                             "privacy.plant_canaries = true does)")
    parser.set_defaults(handler=_import)

