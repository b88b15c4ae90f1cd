"""`appliance export merge ARTIFACT --out DIR`."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._common import add_command, add_group, home_of, print_json
from appliance.errors import EXIT_OK


def _merge(args: argparse.Namespace) -> int:
    from appliance.service.export import merge

    result = merge(home_of(args), args.artifact, args.out)
    if args.json:
        print_json(result)
    else:
        print(f"merged {result['artifact']} into {result['out']} "
              f"({result['merged_root_digest']})")
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `export` command group."""
    group = add_group(sub, common, "export", "export verified results (policy-gated)")
    merge = add_command(group, common, "merge", "verify an artifact's signature, then write "
                                                "base+adapter merged safetensors weights")
    merge.add_argument("artifact", help="artifact directory (HOME/artifacts/RUN)")
    merge.add_argument("--out", required=True, help="output directory (must not exist)")
    merge.add_argument("--json", action="store_true", help="print the result as JSON")
    merge.set_defaults(handler=_merge)
