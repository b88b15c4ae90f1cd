"""`appliance generate ARTIFACT --prompts FILE [--compare-base] [--json]`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from appliance.cli._common import add_command, home_of, print_json
from appliance.errors import EXIT_OK

if TYPE_CHECKING:
    from appliance.service.generate import Answer


def _show(row: Answer) -> None:
    sys.stdout.write(f"> {row['prompt']}\n")
    if "base" in row:
        sys.stdout.write(f"base:    {row['base']}\n")
    sys.stdout.write(f"adapter: {row['adapter']}\n\n")
    sys.stdout.flush()


def _generate(args: argparse.Namespace) -> int:
    from appliance.service.generate import generate, read_prompts

    prompts = read_prompts(args.prompts)
    generate(home_of(args), args.artifact, prompts, compare_base=args.compare_base,
             max_new_tokens=args.max_tokens, on_answer=print_json if args.json else _show)
    return EXIT_OK


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError("must be between 1 and 1024")
    return value


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `generate`."""
    cmd = add_command(sub, common, "generate", "answer prompts with a signed adapter, in "
                      "the isolated model process; answers are PII-masked")
    cmd.add_argument("artifact", help="artifact directory (HOME/artifacts/<run-id>)")
    cmd.add_argument("--prompts", required=True, metavar="FILE",
                     help='JSONL: one {"prompt": ...} or {"messages": [...]} per line '
                     "(- reads standard input)")
    cmd.add_argument("--compare-base", action="store_true",
                     help="also answer with the base model (adapter disabled)")
    cmd.add_argument("--max-tokens", type=_positive, default=64, metavar="N",
                     help="greedy tokens per answer (default 64)")
    cmd.add_argument("--json", action="store_true",
                     help="one JSON object per prompt: prompt, adapter[, base]")
    cmd.set_defaults(handler=_generate)
