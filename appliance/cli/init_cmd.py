"""`appliance init [--policy FILE]` and `appliance keys export --out DIR`."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._common import add_command, add_group, ask_passphrase, home_of, output
from appliance.errors import EXIT_OK


def _init(args: argparse.Namespace) -> int:
    from appliance.service.home import init_home

    home = home_of(args)
    secret = ask_passphrase(args, prompt="New passphrase: ", confirm=True,
                            check_strength=True)
    result = init_home(home, secret, args.policy)
    output(args, result, lambda: print(
        f"initialised {result['home']}\npolicy          {result['policy_name']} "
        f"{result['policy_digest']}\nsigning key     {result['signing_key']}\n"
        f"checkpoint key  {result['checkpoint_key']}\n{WRITE_DOWN}"))
    return EXIT_OK


WRITE_DOWN = ("write these fingerprints down off this machine: auditors pass them (or the "
              "trust-root.json of appliance keys export) to --trusted-key")


def _keys_export(args: argparse.Namespace) -> int:
    from appliance.service.home import export_keys

    result = export_keys(home_of(args), args.out)
    output(args, result, lambda: print(
        *result["files"], f"signing key     {result['signing']}",
        f"checkpoint key  {result['checkpoint']}", WRITE_DOWN, sep="\n"))
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `init` and the `keys` command group."""
    init = add_command(sub, common, "init", "create the home: keys, vault master key, audit "
                       "log, active policy")
    init.add_argument("--policy", metavar="FILE", default=None,
                      help="policy to activate (default: the shipped default policy)")
    init.add_argument("--json", action="store_true", help="print the result as JSON")
    init.set_defaults(handler=_init)
    group = add_group(sub, common, "keys", "the home's public keys")
    export = add_command(group, common, "export", "write the public keys (PEM) for auditors")
    export.add_argument("--out", metavar="DIR", required=True, help="output directory")
    export.add_argument("--json", action="store_true", help="print the result as JSON")
    export.set_defaults(handler=_keys_export)
