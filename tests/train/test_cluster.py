"""Two machines stood in for by two network namespaces of the test's own (veth pairs on a
bridge, 10.231.8.0/24), each node with its own home holding the same model and dataset:
torchrun's static rendezvous over the filtered cluster interface of each node's sandbox.
A 2-node x 1-process run gives the same adapter, bit for bit, as a 1-node x 2-process run;
only node 0 signs and its provenance lists both nodes and the cluster policy; a node with a
different dataset is refused before the first step, on both nodes, with one line. A cancel
on node 1 stops both nodes at one step with a checkpoint in each node's home; nodes whose
checkpoints differ refuse to resume; both resumed give the straight run's adapter."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import keys
from appliance.home import Home
from appliance.policy import load_policy
from appliance.resources import REPO_ROOT, shipped_policy
from appliance.service.cluster import policy_section as cluster_section
from appliance.service.train import train
from tests.sandbox.clusternet import NODE_IFACE, NODE_SANDBOXES, nodes
from tests.train.conftest import PASSPHRASE, make_home, memory_records, place_model, write_recipe

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None,
    reason="needs root and nft (nftables)")]


def cluster_policy() -> str:
    """The demo policy allowing two nodes on the test's cluster network."""
    text = shipped_policy("demo").read_text().replace("max_nodes = 1", "max_nodes = 2")
    listed = ", ".join(f'"{a}"' for a in NODE_SANDBOXES)
    return text + f"\n[network.cluster]\nnodes = [{listed}]\nports = [29500, 29599]\n"


STEPS = 3


def _recipe(path: Path, *, processes: int, nnodes: int) -> Path:
    text = write_recipe(path, steps=STEPS, ckpt=100).read_text()
    text = text.replace("threads = 2", f"threads = 1\nprocesses = {processes}")
    if nnodes > 1:
        text = text.replace("[lora]", f'[cluster]\nnnodes = {nnodes}\nrendezvous = '
                                      f'"{NODE_SANDBOXES[0]}:29500"\n\n[lora]')
    path.write_text(text)
    return path


def _node(netns: str, home: Home, recipe: Path, pass_file: Path, rank: int,
          *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.train.cluster_node_helper",
         str(home.root), str(recipe), str(pass_file), str(rank), NODE_IFACE, *extra],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _both(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        done.append((proc.returncode, out, err))
    return done


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, converted_model: Path) -> str:
    """The adapter digest of the recipe on one node with two processes (the reference)."""
    root = tmp_path_factory.mktemp("straight")
    home = place_model(make_home(root / "home", cluster_policy()), converted_model)
    one = train(home, _recipe(root / "one.toml", processes=2, nnodes=1),
                passphrase=PASSPHRASE.strip().encode(), records=memory_records())
    return one.adapter_sha256


def _homes(tmp_path: Path, converted_model: Path) -> list[Home]:
    policy = cluster_policy()
    return [place_model(make_home(tmp_path / f"node{i}", policy), converted_model)
            for i in range(2)]


def test_two_nodes_train_the_adapter_of_one_node_with_two_processes(
        tmp_path: Path, converted_model: Path, pass_file: Path, straight: str) -> None:
    """Bit-identical adapters; node 0 signs alone and lists both nodes; a different
    dataset on node 1 stops both nodes before training, naming the dataset digest."""
    homes = _homes(tmp_path, converted_model)
    recipe = _recipe(tmp_path / "two.toml", processes=1, nnodes=2)
    with nodes() as (ns0, ns1):
        runs = _both([_node(ns0, homes[0], recipe, pass_file, 0),
                      _node(ns1, homes[1], recipe, pass_file, 1)])
        refused = _both([_node(ns0, homes[0], recipe, pass_file, 0),
                         _node(ns1, homes[1], recipe, pass_file, 1, "other")])
    (code0, out0, err0), (code1, _, err1) = runs
    assert code0 == 0 and code1 == 0, (err0[-2000:], err1[-2000:])
    artifact = Path(out0.strip().splitlines()[-1])
    report = json.loads((artifact / "report.json").read_text())
    assert report["adapter_sha256"] == straight
    assert [n["node_rank"] for n in report["distributed"]["nodes"]] == [0, 1]
    provenance = (artifact / "provenance.json").read_text()
    policy_in_force = cluster_section(load_policy(homes[0].policy_file))
    assert policy_in_force["sha256"] in provenance and policy_in_force["nodes"] == 2
    for home in homes:  # every node's host key
        assert keys.fingerprints(home).signing in provenance
    assert not [p for p in homes[1].artifacts_dir.glob("*") if not p.name.startswith(".")]
    # node 1 finished its part unsigned: node 0 signs (the service's record of it)
    states = [json.loads(p.read_text()) for p in homes[1].runs_dir.glob("*/run.json")]
    assert [s.get("signed_by") for s in states if s["status"] == "done"] == ["node 0"], err1
    finish = [json.loads(x) for x in homes[1].audit_log.read_text().splitlines()
              if '"train.finish"' in x]
    assert [(e.get("signed"), e.get("node_rank")) for e in finish] == [(False, 1)]
    for code, _, err in refused:
        assert code != 0
        assert "different dataset digest" in err, err[-1500:]
    for home in homes:
        log = [json.loads(x) for x in home.audit_log.read_text().splitlines()]
        assert not [e for e in log if e["action"] == "network.attempt"]


def _events_until(proc: subprocess.Popen[str], kind: str, step: int) -> list[dict[str, object]]:
    """The node's events up to the first `kind` at `step`."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        if line.startswith("{"):
            seen.append(json.loads(line))
            if seen[-1]["type"] == kind and seen[-1].get("step") == step:
                return seen
    raise AssertionError(f"node ended before {kind} {step}: {proc.stderr.read()[-1500:]}"
                         if proc.stderr else "node ended")


def _run_id(home: Home) -> str:
    (run,) = [p.name for p in home.runs_dir.iterdir()]
    return run


def _checkpoint_step(home: Home, run_id: str) -> int:
    return int(json.loads((home.runs_dir / run_id / "checkpoints" / "latest.json")
                          .read_text())["step"])


def test_a_cancel_on_one_node_stops_every_node_with_a_checkpoint_and_both_resume(
        tmp_path: Path, converted_model: Path, pass_file: Path, straight: str) -> None:
    """SIGTERM to node 1's `appliance train` after its first step: both nodes stop at the
    same step, each with a checkpoint in its own home (sealed with its own key); resuming
    with node 1's checkpoint missing is refused on both nodes with one line naming the
    steps; resumed with both, node 0 signs the straight run's adapter, bit for bit."""
    homes = _homes(tmp_path, converted_model)
    recipe = _recipe(tmp_path / "two.toml", processes=1, nnodes=2)
    with nodes() as (ns0, ns1):
        procs = [_node(ns0, homes[0], recipe, pass_file, 0),
                 _node(ns1, homes[1], recipe, pass_file, 1)]
        early = _events_until(procs[1], "step", 1)
        procs[1].send_signal(signal.SIGTERM)
        cancelled = _both(procs)
        runs = [_run_id(home) for home in homes]
        steps = [_checkpoint_step(home, run) for home, run in zip(homes, runs, strict=True)]
        node1_events = early + [json.loads(x) for x in cancelled[1][1].splitlines()
                                if x.startswith("{")]
        sealed = [{p.name for p in (home.runs_dir / run / "checkpoints" /
                                    f"step-{step:08d}").iterdir()}
                  for home, run, step in zip(homes, runs, steps, strict=True)]
        kept = homes[1].runs_dir / runs[1] / "checkpoints"
        kept.rename(tmp_path / "kept")
        refused = _both([_node(ns, home, recipe, pass_file, rank, "resume", run)
                         for rank, (ns, home, run) in enumerate(zip((ns0, ns1), homes, runs,
                                                                    strict=True))])
        (tmp_path / "kept").rename(kept)
        resumed = _both([_node(ns, home, recipe, pass_file, rank, "resume", run)
                         for rank, (ns, home, run) in enumerate(zip((ns0, ns1), homes, runs,
                                                                    strict=True))])
    for code, out, err in cancelled:
        assert code == 1 and "checkpoint saved" in err, err[-2000:]
        (stopped,) = [json.loads(x) for x in out.splitlines() if '"stopped"' in x]
        assert stopped["checkpoint"] is True and stopped["step"] == steps[0]
    assert steps[0] == steps[1] >= 1
    assert [e["type"] for e in node1_events].count("signal") == 1
    assert "signal" not in cancelled[0][1]
    assert sealed == [{"tensors.safetensors.sealed", "state.json.sealed"}] * 2
    for code, _, err in refused:
        assert code == 1, err[-1500:]
        assert (f"node 1 (rank 1) resumes from no checkpoint (step 0), node 0 from step "
                f"{steps[0]}") in err, err[-1500:]
    (code0, out0, err0), (code1, _, err1) = resumed
    assert code0 == 0 and code1 == 0, (err0[-2000:], err1[-2000:])
    events0 = [json.loads(x) for x in out0.splitlines() if x.startswith("{")]
    assert [e["step"] for e in events0 if e["type"] == "resumed"] == [steps[0]]
    report = json.loads((Path(out0.strip().splitlines()[-1]) / "report.json").read_text())
    assert report["adapter_sha256"] == straight
    assert not (homes[1].runs_dir / runs[1] / "checkpoints").exists()  # done, as node 0
