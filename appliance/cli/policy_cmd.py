"""`appliance policy check|hash|schema`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.cli._common import add_command, add_group, output, warn
from appliance.errors import EXIT_BAD_INPUT, EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from appliance.service.policy import check_policy

    result = check_policy(args.file)
    if args.json or result.ok:  # the JSON result lists the problems itself
        output(args, {"path": result.path, "ok": result.ok, "problems": result.problems,
                      "digest": result.digest, "name": result.name},
               lambda: print(f"{result.path}: ok ({result.name}, {result.digest})"))
    else:
        for problem in result.problems:
            sys.stderr.write(problem + "\n")
        warn(f"{result.path}: {len(result.problems)} problem(s) in the policy (fix the listed "
             "keys; appliance policy schema prints every field)")
    return EXIT_OK if result.ok else EXIT_BAD_INPUT


def _hash(args: argparse.Namespace) -> int:
    from appliance.service.policy import hash_policy

    print(hash_policy(args.file))
    return EXIT_OK


def _schema(_args: argparse.Namespace) -> int:
    from appliance.service.policy import schema

    sys.stdout.write(schema())
    return EXIT_OK


def _print_changes(changes: list[Any]) -> None:
    for change in changes:
        print(f"{change.key}: {change.old} -> {change.new}")
    if not changes:
        print("no effective change")


def _diff(args: argparse.Namespace) -> int:
    from appliance.cli._common import home_of
    from appliance.service.policy import diff_policies

    old = args.old if args.new is not None else home_of(args).policy_file
    new = args.new if args.new is not None else args.old
    changes = diff_policies(old, new)
    output(args, {"changes": [vars(c) for c in changes]}, lambda: _print_changes(changes))
    return EXIT_OK


def _apply(args: argparse.Namespace) -> int:
    from appliance.cli._common import ask_passphrase, home_of
    from appliance.service.policy import apply_policy, plan_apply

    home = home_of(args)
    _, changes, edited = plan_apply(home, args.file)
    if not args.json:
        if edited:
            print(f"note: {home.policy_file} was edited by hand; the changes below are from "
                  "that file, not from the policy the home manifest records")
        _print_changes(changes)
    result = apply_policy(home, args.file,
                          ask_passphrase(args, prompt="Passphrase to apply this policy: "))
    output(args, result, lambda: print(f"applied {result['name']}: {result['old_digest']} -> "
                                       f"{result['new_digest']}"))
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `policy` command group."""
    group = add_group(sub, common, "policy", "validate, hash and describe policy files")
    check = add_command(group, common, "check", "validate a policy file, listing every problem")
    check.add_argument("file", help="policy TOML file")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.set_defaults(handler=_check)
    digest = add_command(group, common, "hash", "print the canonical sha256 digest of a policy")
    digest.add_argument("file", help="policy TOML file")
    digest.set_defaults(handler=_hash)
    diff = add_command(group, common, "diff", "show every effective setting that differs "
                       "(OLD NEW, or the active policy and FILE)")
    diff.add_argument("old", metavar="FILE", help="policy TOML file (the new one when alone)")
    diff.add_argument("new", metavar="NEW", nargs="?", default=None, help="policy TOML file")
    diff.add_argument("--json", action="store_true", help="print the changes as JSON")
    diff.set_defaults(handler=_diff)
    apply = add_command(group, common, "apply", "make FILE the active policy: checks it, "
                        "shows the difference, asks for the passphrase, audits both digests")
    apply.add_argument("file", help="policy TOML file")
    apply.add_argument("--json", action="store_true", help="print the result as JSON")
    apply.set_defaults(handler=_apply)
    schema = add_command(group, common, "schema", "print the policy's JSON Schema")
    schema.set_defaults(handler=_schema)
