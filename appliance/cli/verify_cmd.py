"""`appliance verify DIR|FILE [--json]`: check a signed artifact (or a signed single file,
such as a `NAME.gguf` export with its signature files beside it)."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._common import add_command, home_of, output, warn
from appliance.errors import EXIT_FAILED, EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from appliance.service.artifacts import verify

    result = verify(home_of(args), args.dir, args.policy, trusted_key=args.trusted_key)
    def show() -> None:
        if result["ok"]:
            print(f"{args.dir}: {result['reason']} ({result['signer']}, root "
                  f"{result['root_digest']})", result["trust"], *result.get("unchecked", []),
                  sep="\n")

    output(args, result, show)
    if not result["ok"]:  # the JSON result says why itself: no `failed` event
        warn(f"{args.dir}: verification failed: {result['reason']}")
    return EXIT_OK if result["ok"] else EXIT_FAILED


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `verify`."""
    verify = add_command(sub, common, "verify", "check that a directory is a complete, "
                         "unmodified artifact signed by a key the policy trusts (or a file "
                         "exported as NAME.gguf, with its signature files beside it)")
    verify.add_argument("dir", help="artifact directory, or a signed NAME.gguf file")
    verify.add_argument("--policy", metavar="FILE", default=None,
                        help="trust what this policy trusts (default: the home's policy)")
    verify.add_argument("--trusted-key", metavar="FINGERPRINT|FILE", default=None,
                        help="trust only this signing key: sha256:<hex>, the trust-root.json "
                             "written by appliance keys export, or a PEM public key")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(handler=_verify)
