"""`appliance scrub eval FILE [--json]`: score PII detection on a labeled file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.cli._common import add_command, add_group, home_of, output
from appliance.errors import EXIT_OK

if TYPE_CHECKING:
    from appliance.service.scrub import Evaluation


def _policy(args: argparse.Namespace) -> Any:
    from appliance.policy import load_policy
    from appliance.resources import shipped_policy

    if args.policy:
        return load_policy(args.policy)
    home = home_of(args)
    if home.is_initialised():
        return load_policy(home.policy_file)
    return load_policy(shipped_policy("default"))


def _eval(args: argparse.Namespace) -> int:
    from appliance.service.scrub import evaluate_file

    home = home_of(args)
    result = evaluate_file(Path(args.file), _policy(args), baseline=args.baseline,
                           home=home if home.is_initialised() else None)
    output(args, result, lambda: _print_evaluation(result))
    return EXIT_OK


def _print_evaluation(result: Evaluation) -> None:
    print(f"{result['records']} records, {result['records_per_s']:.1f} records/s, "
          f"{result['quarantined']} quarantined")
    print(f"{'entity':<20} {'n':>6} {'masked':>8} {'partial':>8} {'leaked':>8}")
    for entity, row in result["entities"].items():
        print(f"{entity:<20} {row['n']:>6} {row['masked']:>8.1%} {row['partial']:>8.1%} "
              f"{row['leaked']:>8.1%}")
    d = result["direct_identifiers"]
    print(f"direct identifiers: {d['masked']:.1%} masked, {d['leaked']:.1%} leaked "
          f"(n={d['n']}); over-redaction {result['over_redaction']:.1%}")
    if "baseline" in result:
        _print_baseline(result)
    if not result["ner"]["detects_names_and_places"]:
        print(f"WARNING: {result['ner']['warning']}")


def _print_baseline(result: Evaluation) -> None:
    raw = result["baseline"]
    print(f"baseline {raw['name']} (same records, same run): {raw['records_per_s']:.1f} "
          "records/s")
    print(f"{'entity':<20} {'ours masked':>12} {'base masked':>12} {'ours leaked':>12} "
          f"{'base leaked':>12}")
    for entity, row in raw["entities"].items():
        mine = result["entities"][entity]
        print(f"{entity:<20} {mine['masked']:>12.1%} {row['masked']:>12.1%} "
              f"{mine['leaked']:>12.1%} {row['leaked']:>12.1%}")
    d = raw["direct_identifiers"]
    print(f"baseline direct identifiers: {d['masked']:.1%} masked, {d['leaked']:.1%} leaked; "
          f"over-redaction {raw['over_redaction']:.1%}")
    worse = ", ".join(result["below_baseline"]) or "none"
    print(f"types below the baseline: {worse}")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `scrub` command group."""
    actions = add_group(sub, common, "scrub", "PII scrubbing tools")
    ev = add_command(actions, common, "eval", "score PII detection on a labeled file "
                     "(presidio-research JSON format)")
    ev.add_argument("file", help="JSON list of {full_text, spans}")
    ev.add_argument("--json", action="store_true", help="print the scores as JSON")
    ev.add_argument("--policy", metavar="FILE", default=None,
                    help="policy to score under (default: the home's, else the shipped one)")
    ev.add_argument("--baseline", choices=["presidio"], default=None,
                    help="also score raw Presidio (default recognizers, same spaCy model) on "
                         "the same records in the same run")
    ev.set_defaults(handler=_eval)
