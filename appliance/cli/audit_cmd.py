"""`appliance audit verify|export|checkpoint`."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._common import (
    add_command,
    add_group,
    ask_passphrase,
    home_of,
    optional_passphrase,
    output,
    warn,
)
from appliance.errors import EXIT_FAILED, EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from appliance.service import audit

    if args.bundle:
        report = audit.verify_bundle(args.bundle, args.anchor, args.trusted_key)
    else:
        report = audit.verify_home(home_of(args), args.anchor, args.trusted_key)
    def show() -> None:
        if not report["ok"]:
            return
        print(report["reason"])
        if report["uncovered"]:
            print(f"warning: {report['uncovered']} entries after the newest checkpoint are "
                  "not yet covered by a signature (appliance audit checkpoint covers them)")
        print(f"checkpoint key {report['checkpoint_key']}")
        print(report["trust"])
        for line in report.get("unchecked", []):
            print(line)

    output(args, report, show)
    if not report["ok"]:
        where = f"line {report['first_bad_line']}" if report["first_bad_line"] else "log"
        warn(f"audit log does not verify ({where}): {report['reason']}")  # the JSON says why
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _export(args: argparse.Namespace) -> int:
    from appliance.service import audit

    secret = None
    if not args.no_checkpoint:
        secret = optional_passphrase(args)
        if secret is None:
            warn("no passphrase available: exporting without a new checkpoint; the newest "
                 "entries stay uncovered")
    summary = audit.export_bundle(home_of(args), args.out, secret)
    output(args, summary, lambda: print(
        f"wrote {args.out}: {summary['entries']} entries, {summary['checkpoints']} "
        f"checkpoints, {summary['artifacts']} artifacts\ncheckpoint key "
        f"{summary['checkpoint_key']}"))
    return EXIT_OK


def _checkpoint(args: argparse.Namespace) -> int:
    from appliance.service import audit

    cp = audit.checkpoint_now(home_of(args), ask_passphrase(args), args.out)
    output(args, cp, lambda: print(f"checkpoint {cp['origin']} size {cp['size']} root "
                                   f"{cp['root']}"))
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `audit` command group."""
    group = add_group(sub, common, "audit", "verify and export the tamper-evident audit log")
    verify = add_command(group, common, "verify", "check the log against its signed checkpoints")
    verify.add_argument("--anchor", metavar="FILE", default=None,
                        help="a checkpoint exported earlier and kept off the machine")
    verify.add_argument("--bundle", metavar="DIR", default=None,
                        help="verify an exported bundle instead of the home")
    verify.add_argument("--trusted-key", metavar="FINGERPRINT|FILE", default=None,
                        help="the checkpoint key to require: sha256:<hex>, the trust-root.json "
                             "written by appliance keys export, or a PEM public key")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(handler=_verify)
    export = add_command(group, common, "export", "write an auditor's bundle")
    export.add_argument("--out", metavar="DIR", required=True, help="output directory")
    export.add_argument("--no-checkpoint", action="store_true",
                        help="do not ask for the passphrase; the newest entries stay uncovered")
    export.add_argument("--json", action="store_true", help="print the summary as JSON")
    export.set_defaults(handler=_export)
    checkpoint = add_command(group, common, "checkpoint",
                             "sign a checkpoint over the whole log now")
    checkpoint.add_argument("--out", metavar="FILE", default=None,
                            help="also write it here, as an anchor to keep off the machine")
    checkpoint.add_argument("--json", action="store_true", help="print it as JSON")
    checkpoint.set_defaults(handler=_checkpoint)
