"""`appliance train RECIPE [--json-events] [--processes N] [--nnodes N --node-rank R
--rendezvous HOST:PORT --cluster-interface IFACE] | --resume RUN`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.cli._common import add_command, home_of, passphrase, print_json
from appliance.errors import EXIT_OK
from appliance.train.events import Kind


def _progress(event: dict[str, Any]) -> None:
    """A one-line progress display on stderr."""
    kind = event.get("type")
    if kind == "step":
        width = 24
        done = int(width * event["step"] / max(1, event["total_steps"]))
        eta = int(event.get("eta_s", 0))
        sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] step {event['step']}/"
                         f"{event['total_steps']} loss {event['loss']:.4f} "
                         f"lr {event['lr']:.2e} {event['tokens_per_s']:.0f} tok/s "
                         f"eta {eta // 60}m{eta % 60:02d}s ")
        if event["step"] == event["total_steps"]:
            sys.stderr.write("\n")
    elif kind in ("eval", "general"):
        at = f" at step {event['step']}" if "step" in event else ""
        what = "held-out" if kind == "eval" else "general-text"
        sys.stderr.write(f"\n{what} eval {event['phase']}{at}: loss {event['loss']:.4f} "
                         f"perplexity {event['perplexity']:.2f} ({event['records']} "
                         "records)\n")
    elif kind == "early_stop":
        sys.stderr.write(f"\nearly stop at step {event['step']}: no improvement for "
                         f"{event['patience']} evaluations (best: step {event['best_step']})\n")
    elif kind == "best":
        sys.stderr.write(f"adapter kept: step {event['step']} ({event['reason']})\n")
    elif kind == "guard":
        sys.stderr.write(f"\nguard at step {event['step']}: {event['message']}\n")
    elif kind == "checkpoint":
        sys.stderr.write(f"\ncheckpoint at step {event['step']}\n")
    elif kind == "resumed":
        sys.stderr.write(f"resumed at step {event['step']}/{event['total_steps']}\n")
    elif kind == "tripwire":
        sys.stderr.write(f"\nblocked: {event.get('via')} {event.get('target', '')}\n")
    elif kind == "signal":
        sys.stderr.write(f"\n{event['signal']}: stopping at the next step boundary (at once "
                         "before the first step; a second signal kills the trainer)\n")
    elif kind == Kind.WORKERS_STARTED:
        sys.stderr.write(f"{event['world_size']} training processes started\n")
    sys.stderr.flush()


def _train(args: argparse.Namespace) -> int:
    from appliance.errors import UsageError
    from appliance.service.train import train

    if (args.recipe is None) == (args.resume is None):
        raise UsageError("give a RECIPE file or --resume RUN (not both)")
    result = train(home_of(args), args.recipe, resume=args.resume,
                   passphrase=passphrase(args),
                   on_event=print_json if args.json_events else _progress,
                   echo_child_output=bool(getattr(args, "debug", False)),
                   processes=args.processes, cluster_keys=_cluster_keys(args))
    if not result.signed and not result.adapter_sha256:  # a cluster node other than 0
        sys.stderr.write(f"run {result.run_id}: this node's part is done; node 0 signs\n")
        print(result.artifact_dir)
        return EXIT_OK
    if not args.json_events:
        sys.stderr.write(f"run {result.run_id}: eval loss {result.eval_before.get('loss'):.4f}"
                         f" -> {result.eval_after.get('loss'):.4f}; adapter "
                         f"{result.adapter_sha256}\n")
    print(result.artifact_dir)
    return EXIT_OK


def _cluster_keys(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe's [cluster] keys given on the command line."""
    given = {"nnodes": args.nnodes, "node_rank": args.node_rank,
             "rendezvous": args.rendezvous, "interface": args.cluster_interface}
    return {k: v for k, v in given.items() if v is not None}


def _rank(text: str) -> int:
    try:
        return _positive(str(int(text) + 1)) - 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return value


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `train` command."""
    cmd = add_command(sub, common, "train", "QLoRA training in a network-isolated child "
                                            "process; prints the artifact directory last")
    cmd.add_argument("recipe", nargs="?", help="recipe TOML file")
    cmd.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    cmd.add_argument("--processes", type=_positive, metavar="N",
                     help="data-parallel training processes (overrides the recipe's "
                          "`processes`; new runs only)")
    cmd.add_argument("--nnodes", type=_positive, metavar="N",
                     help="machines in the run (recipe [cluster] nnodes; policy "
                          "training.limits.max_nodes)")
    cmd.add_argument("--node-rank", type=_rank, metavar="R",
                     help="this machine's place, 0 to N-1 (node 0 signs)")
    cmd.add_argument("--rendezvous", metavar="HOST:PORT",
                     help="node 0's rendezvous address on the cluster network")
    cmd.add_argument("--cluster-interface", metavar="IFACE",
                     help="this machine's interface onto the cluster network")
    cmd.add_argument("--json-events", action="store_true",
                     help="print one JSON event per line (step, loss, lr, tokens/s, ETA, "
                          "eval)")
    cmd.set_defaults(handler=_train)
