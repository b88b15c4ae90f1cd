"""`appliance chat ARTIFACT [--compare-base] [--system TEXT]`: an interactive session with
a signed adapter. One isolated model process serves the whole session (the model loads
once; each turn goes to it over a pipe with the conversation so far); answers are
PII-masked in that process like `appliance generate`'s. An empty line, `/quit` or end of
input ends the session."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.cli._common import add_command, home_of
from appliance.errors import EXIT_OK

QUIT = frozenset({"/quit", "/exit"})


def _read(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


def _chat(args: argparse.Namespace) -> int:
    from appliance.service.generate import ChatSession

    history: list[dict[str, str]] = []
    if args.system:
        history.append({"role": "system", "content": args.system})
    with ChatSession(home_of(args), args.artifact, compare_base=args.compare_base,
                     max_new_tokens=args.max_tokens) as session:
        sys.stdout.write("chat with the adapter (empty line or /quit ends)\n")
        while True:
            line = _read("you> ")
            if line is None or not line.strip() or line.strip() in QUIT:
                return EXIT_OK
            history.append({"role": "user", "content": line})
            row = session.ask(list(history))
            if "base" in row:
                sys.stdout.write(f"base> {row['base']}\n")
            sys.stdout.write(f"adapter> {row['adapter']}\n")
            sys.stdout.flush()
            history.append({"role": "assistant", "content": row["adapter"]})


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `chat`."""
    from appliance.cli.generate_cmd import _positive

    cmd = add_command(sub, common, "chat", "talk with a signed adapter in one isolated "
                      "model process; answers are PII-masked")
    cmd.add_argument("artifact", help="artifact directory (HOME/artifacts/<run-id>)")
    cmd.add_argument("--compare-base", action="store_true",
                     help="also show the base model's answer to each turn")
    cmd.add_argument("--system", metavar="TEXT", default=None, help="a system message")
    cmd.add_argument("--max-tokens", type=_positive, default=64, metavar="N",
                     help="greedy tokens per answer (default 64)")
    cmd.set_defaults(handler=_chat)
