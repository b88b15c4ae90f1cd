"""`scripts/bench.sh train --nodes 2`: step time of a 2-node x 1-process run over two network
namespaces (10.231.9.0/24, made and removed here) against the appliance on one process, in
the same run. Each node has its own home holding the same model; records are the
benchmark's synthetic ones, made from the same seed on each node."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.passphrase import read_passphrase

HERE = Path(__file__).resolve().parent
NS = ("b231-n0", "b231-n1")
SWITCH = "b231-sw"
IFACE = "b231c"
HOSTS = ("10.231.9.1", "10.231.9.2")
SANDBOXES = ("10.231.9.11", "10.231.9.12")


def _ip(*argv: str, check: bool = True) -> None:
    subprocess.run(["ip", *argv], check=check, capture_output=True, timeout=30)


def _wire() -> None:
    for name in (SWITCH, *NS):
        _ip("netns", "del", name, check=False)
        _ip("netns", "add", name)
    _ip("-n", SWITCH, "link", "add", "br0", "type", "bridge")
    _ip("-n", SWITCH, "link", "set", "br0", "up")
    for i, (ns, addr) in enumerate(zip(NS, HOSTS, strict=True)):
        _ip("-n", SWITCH, "link", "add", f"p{i}", "type", "veth", "peer", "name", IFACE,
            "netns", ns)
        _ip("-n", SWITCH, "link", "set", f"p{i}", "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", IFACE)
        _ip("-n", ns, "link", "set", IFACE, "up")
        _ip("-n", ns, "link", "set", "lo", "up")


def _unwire() -> None:
    for name in (SWITCH, *NS):
        _ip("netns", "del", name, check=False)


def policy_text() -> str:
    """The demo policy allowing the benchmark's two nodes."""
    from appliance.resources import shipped_policy

    listed = ", ".join(f'"{a}"' for a in SANDBOXES)
    return (shipped_policy("demo").read_text().replace("max_nodes = 1", "max_nodes = 2")
            + f"\n[network.cluster]\nnodes = [{listed}]\nports = [29500, 29599]\n")


def node_main(spec: dict[str, Any]) -> int:
    """One node (run inside its namespace): train and print the step events."""
    sys.path.insert(0, str(HERE))
    from train import records

    from appliance.home import Home
    from appliance.service.train import train

    recs = records(spec["n"], words=spec["words"])
    evals = records(2, words=32, seed=1)
    steps: list[dict[str, Any]] = []

    def provider(*_: Any) -> list[dict[str, Any]]:
        return recs if _[-1] == "train" else evals

    result = train(Home(Path(spec["home"])), spec["recipe"],
                   passphrase=read_passphrase(spec["pass"]),
                   records=provider, on_event=lambda e: steps.append(e)
                   if e["type"] == "step" else None,
                   cluster_keys={"node_rank": spec["rank"], "interface": IFACE})
    print(json.dumps({"step_times": [e["step_time_s"] for e in steps],
                      "adapter": result.adapter_sha256}))
    return 0


def two_nodes(args: argparse.Namespace, records: Callable[..., list[dict[str, Any]]],
              recipe_text: Callable[[argparse.Namespace], str]) -> int:
    """Both sides, then the comparison line."""
    from benchhome import PASSPHRASE, import_default_model, make_home

    from appliance.models import importer
    from appliance.service.models import record_model
    from appliance.service.train import train

    if os.geteuid() != 0 or shutil.which("nft") is None:
        print("bench: --nodes 2 needs root and nft (nftables)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-nodes-"))
    homes = [make_home(work / f"node{i}", policy_text()) for i in range(2)]
    import_default_model(homes[0])
    shutil.copytree(homes[0].models_dir / importer.DEFAULT_NAME,
                    homes[1].models_dir / importer.DEFAULT_NAME, copy_function=os.link)
    for home in homes:
        record_model(home, importer.DEFAULT_NAME, PASSPHRASE.strip().encode())
    pass_file = work / "pass"
    pass_file.write_text(PASSPHRASE)
    pass_file.chmod(0o600)
    args.threads = max(1, args.threads // 2)  # the two nodes share this machine's cores
    one = work / "one.toml"
    one.write_text(recipe_text(args))
    two = work / "two.toml"
    two.write_text(recipe_text(args).replace(
        "[lora]", f'[cluster]\nnnodes = 2\nrendezvous = "{SANDBOXES[0]}:29500"\n\n[lora]'))
    recs = records(args.steps * args.batch * 2, words=args.seq_len)
    evals = records(2, words=32, seed=1)
    base_steps: list[float] = []
    train(homes[0], one, passphrase=read_passphrase(str(pass_file)),
          records=lambda *a: recs[:args.steps * args.batch] if a[-1] == "train" else evals,
          on_event=lambda e: base_steps.append(e["step_time_s"]) if e["type"] == "step"
          else None)
    _wire()
    try:
        procs = [subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, __file__, json.dumps(
                {"home": str(homes[i].root), "recipe": str(two), "pass": str(pass_file),
                 "rank": i, "n": args.steps * args.batch * 2, "words": args.seq_len})],
            stdout=subprocess.PIPE, text=True, env={**os.environ})
            for i, ns in enumerate(NS)]
        outs = [p.communicate(timeout=3600)[0] for p in procs]
    finally:
        _unwire()
    node0 = json.loads(outs[0].strip().splitlines()[-1])
    ours = statistics.median(node0["step_times"][2:] or node0["step_times"])
    theirs = statistics.median(base_steps[2:] or base_steps)
    print(json.dumps({"name": "train-nodes", "unit": "s/step", "ours": round(ours, 4),
                      "baseline": round(theirs, 4), "ratio": round(theirs / ours, 4),
                      "ours_setup": "2 nodes x 1 process (network namespaces, macvlan, "
                                    "nftables), batch per node",
                      "baseline_setup": "1 node x 1 process, same batch",
                      "steps": args.steps, "batch": args.batch, "seq_len": args.seq_len,
                      "threads_per_process": args.threads,
                      "adapter_two_nodes": node0["adapter"]}))
    return 0


if __name__ == "__main__":
    sys.exit(node_main(json.loads(sys.argv[1])))
