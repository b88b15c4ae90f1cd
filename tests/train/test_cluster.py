"""Two machines stood in for by two network namespaces of the test's own (veth pairs on a
bridge, 10.231.8.0/24), each node with its own home holding the same model and dataset:
torchrun's static rendezvous over the filtered cluster interface of each node's sandbox.
A 2-node x 1-process run gives the same adapter, bit for bit, as a 1-node x 2-process run;
only node 0 signs and its provenance lists both nodes and the cluster policy; a node with a
different dataset is refused before the first step, on both nodes, with one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import keys
from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.policy import load_policy
from appliance.resources import REPO_ROOT, shipped_policy
from appliance.service.cluster import policy_section as cluster_section
from appliance.service.train import train
from tests.sandbox.clusternet import NODE_IFACE, NODE_SANDBOXES, nodes
from tests.train.conftest import make_home, memory_records, place_model, write_recipe

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None,
    reason="needs root and nft (nftables)")]


def cluster_policy() -> str:
    """The demo policy allowing two nodes on the test's cluster network."""
    text = shipped_policy("demo").read_text().replace("max_nodes = 1", "max_nodes = 2")
    listed = ", ".join(f'"{a}"' for a in NODE_SANDBOXES)
    return text + f"\n[network.cluster]\nnodes = [{listed}]\nports = [29500, 29599]\n"


def _recipe(path: Path, *, processes: int, nnodes: int) -> Path:
    text = write_recipe(path, steps=2, ckpt=100).read_text()
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


def test_two_nodes_train_the_adapter_of_one_node_with_two_processes(
        tmp_path: Path, converted_model: Path, pass_file: Path) -> None:
    """Bit-identical adapters; node 0 signs alone and lists both nodes; a different
    dataset on node 1 stops both nodes before training, naming the dataset digest."""
    policy = cluster_policy()
    homes = [place_model(make_home(tmp_path / f"node{i}", policy), converted_model)
             for i in range(2)]
    one = train(homes[0], _recipe(tmp_path / "one.toml", processes=2, nnodes=1),
                passphrase=read_passphrase(str(pass_file)), records=memory_records())
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
    assert report["adapter_sha256"] == one.adapter_sha256
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
