"""One node of a cluster run in its own process (a test starts it inside the node's network
namespace), with in-memory records, printing every event as a JSON line; the last line is
the artifact (node 0) or run directory.

Usage: python -m tests.train.cluster_node_helper HOME RECIPE PASSFILE NODE_RANK IFACE
[other | resume RUN] (`other`: a training split with one record changed, so the dataset
digest differs; `resume RUN`: resume this node's run RUN, the cluster keys given again).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.service.train import train
from tests.train.conftest import ALPACA, CHAT, memory_records


def main() -> int:
    """Train this node's part; an error is one line on stderr and its exit code."""
    home, recipe, pass_file = Home(Path(sys.argv[1])), sys.argv[2], sys.argv[3]
    rank, iface = int(sys.argv[4]), sys.argv[5]
    records = memory_records()
    resume = sys.argv[7] if sys.argv[6:7] == ["resume"] else None
    if sys.argv[6:] == ["other"]:
        changed = [dict(r) for r in CHAT[:8] + ALPACA[:2]]
        changed[-1] = {**changed[-1], "output": "The sum is unknown."}
        records = memory_records(changed)
    try:
        result = train(home, None if resume else recipe, resume=resume,
                       passphrase=read_passphrase(pass_file), records=records,
                       on_event=lambda e: print(json.dumps(e, sort_keys=True), flush=True),
                       cluster_keys={"node_rank": rank, "interface": iface})
    except ApplianceError as exc:
        sys.stderr.write(f"appliance: {exc.line()}\n")
        return exc.exit_code
    print(result.artifact_dir, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
