"""`appliance privacy-check ARTIFACT [--json]`: canary exposure of a signed adapter.

Exit 0 when the verdict is pass, 1 when it fails (or the artifact does not verify)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from appliance.cli._common import add_command, failed, home_of, output, passphrase
from appliance.errors import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from appliance.service.privacy import ArtifactPrivacy


def _progress(event: dict[str, Any]) -> None:
    if not sys.stderr.isatty():
        return
    if event.get("type") == "privacy_loaded":
        sys.stderr.write(f"model loaded in {event['seconds']:.0f} s; measuring "
                         f"{event['canaries']} canaries\n")
    elif event.get("type") == "privacy_canary":
        sys.stderr.write(f"  {event['id']}: {event['exposure_bits']:.2f} bits\n")


def _print(result: ArtifactPrivacy) -> None:
    groups, test, ext = result["groups"], result["test"], result["extraction"]

    def fmt(group: dict[str, Any]) -> str:
        if not group["n"]:
            return "n=0"
        return f"n={group['n']} mean {group['mean']:.2f} max {group['max']:.2f} bits"

    print(f"candidates per canary: {result['candidates']} (resolution "
          f"{result['resolution_bits']:.2f} bits, chance mean "
          f"{result['chance_mean_bits']:.2f} bits)")
    print(f"planted:  {fmt(groups['planted'])}")
    for count, group in groups["by_repeats"].items():
        print(f"  x{count:<6}{fmt(group)}, extraction hits {group['extraction_hits']}")
    print(f"controls: {fmt(groups['controls'])}")
    top = result["test_top_repeats"]
    print(f"Mann-Whitney U, planted > controls: U = {test['u']:.1f}, p = "
          f"{test['p_value']:.3g}; x{top['repeats']} > controls: U = {top['u']:.1f}, p = "
          f"{top['p_value']:.3g} (each at alpha/2 = {test['alpha_each']:g})")
    print(f"extraction: {ext['hits']} hit(s) in {ext['attempts']} greedy attempts")
    print(f"verdict: {result['verdict']}" +
          (": " + "; ".join(result["reasons"]) if result["reasons"] else ""))


def _check(args: argparse.Namespace) -> int:
    from appliance.service.privacy import check_artifact

    result = check_artifact(home_of(args), args.artifact,
                            passphrase=passphrase(args), on_event=_progress)
    output(args, result, lambda: _print(result))
    if result["verdict"] != "pass":
        failed(args, f"{args.artifact}: privacy check failed: {'; '.join(result['reasons'])}",
               EXIT_FAILED)
        return EXIT_FAILED
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `privacy-check`."""
    cmd = add_command(sub, common, "privacy-check", "measure whether canaries planted in "
                      "the training data can be pulled out of a signed adapter")
    cmd.add_argument("artifact", metavar="ARTIFACT", help="signed artifact directory")
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.set_defaults(handler=_check)
