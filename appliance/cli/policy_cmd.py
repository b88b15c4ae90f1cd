"""`appliance policy check|hash|schema`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.cli._common import add_command, add_group, print_json
from appliance.errors import EXIT_BAD_INPUT, EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from appliance.service.policy import check_policy

    result = check_policy(args.file)
    if args.json:
        print_json({"path": result.path, "ok": result.ok, "problems": result.problems,
                    "digest": result.digest, "name": result.name})
    elif result.ok:
        print(f"{result.path}: ok ({result.name}, {result.digest})")
    else:
        for problem in result.problems:
            sys.stderr.write(problem + "\n")
        sys.stderr.write(f"appliance: {result.path}: {len(result.problems)} problem(s) in the "
                         "policy (fix the listed keys; appliance policy schema prints every "
                         "field)\n")
    return EXIT_OK if result.ok else EXIT_BAD_INPUT


def _hash(args: argparse.Namespace) -> int:
    from appliance.service.policy import hash_policy

    print(hash_policy(args.file))
    return EXIT_OK


def _schema(_args: argparse.Namespace) -> int:
    from appliance.service.policy import schema

    sys.stdout.write(schema())
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
    schema = add_command(group, common, "schema", "print the policy's JSON Schema")
    schema.set_defaults(handler=_schema)
