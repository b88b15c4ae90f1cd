"""Run the training service with in-memory records in a separate process, printing every
event as a JSON line (so a test can kill -9 it at a chosen point).

Usage: python -m tests.train.run_train_helper HOME RECIPE PASSFILE [RUN_TO_RESUME]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.service.train import train
from tests.train.conftest import memory_records


def main() -> int:
    """Train and print events; the artifact directory is the last line (an error: one line
    on stderr and its exit code, as the CLI does)."""
    home, recipe, pass_file = Home(Path(sys.argv[1])), sys.argv[2], sys.argv[3]
    resume = sys.argv[4] if len(sys.argv) > 4 else None

    def show(event: dict[str, object]) -> None:
        print(json.dumps(event, sort_keys=True), flush=True)

    try:
        result = train(home, None if resume else recipe, resume=resume,
                       passphrase=read_passphrase(pass_file), records=memory_records(),
                       on_event=show)
    except ApplianceError as exc:  # like the CLI: one line on stderr, the promised code
        sys.stderr.write(f"appliance: {exc.line()}\n")
        return exc.exit_code
    print(result.artifact_dir, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
