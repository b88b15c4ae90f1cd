"""Multi-process (DDP, gloo on CPU) training inside the run's network namespace: two real
workers on the real base model step in lockstep, end with identical adapters (the
gradients were all-reduced), rank 0 alone writes the signed artifact, nothing reaches out,
two identical runs give the same adapter; and the data sharding gives every rank its own
part of each global batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.home import Home
from appliance.service.artifacts import verify
from appliance.service.train import probe_isolation, train
from appliance.train.distributed import World, padded, share
from tests.train.conftest import memory_records, write_recipe


def test_every_rank_gets_its_own_share_of_each_global_batch() -> None:
    """Shares are disjoint, cover the batch, and nobody is left empty (padding repeats)."""
    batch = list(range(7))
    shares = [share(padded(batch, World(r, 3)), World(r, 3)) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    short = [share(padded([9], World(r, 2)), World(r, 2)) for r in range(2)]
    assert short == [[9], [9]]
    assert share(padded(batch, World()), World()) == batch


def _audit(home: Home) -> list[dict[str, object]]:
    return [json.loads(line) for line in home.audit_log.read_text().splitlines()]


def _two_process_recipe(path: Path) -> Path:
    text = write_recipe(path, steps=2, ckpt=1).read_text()
    path.write_text(text.replace("threads = 2", "threads = 1\nprocesses = 2"))
    return path


def test_two_processes_train_one_synchronised_signed_adapter(train_home: Home,
                                                            pass_file: Path,
                                                            tmp_path: Path) -> None:
    """Two gloo workers in the namespace: both step twice, their adapters are bit-identical
    after the all-reduced steps, rank 0's artifact verifies, the rendezvous stayed on the
    namespace's loopback (no network report), and the run's events name both workers."""
    events: list[dict[str, object]] = []
    recipe = _two_process_recipe(tmp_path / "r.toml")
    result = train(train_home, recipe, passphrase_file=str(pass_file),
                   records=memory_records(), on_event=events.append)
    report = json.loads((result.artifact_dir / "report.json").read_text())
    workers = report["distributed"]["workers"]
    assert [w["rank"] for w in workers] == [0, 1]
    assert {w["steps"] for w in workers} == {2}
    assert {w["backend"] for w in workers} == {"gloo"}
    assert workers[0]["params_sha256"] == workers[1]["params_sha256"]
    (launched,) = [e for e in events if e["type"] == "workers"]
    assert launched["world_size"] == 2 and launched["loopback"] == "up"
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2]  # rank 0 reports
    assert verify(train_home, result.artifact_dir)["ok"] is True
    log = _audit(train_home)
    start = next(e for e in log if e["action"] == "train.start")
    assert start["processes"] == 2
    assert [e for e in log if e["action"] == "network.blocked"] == []
    spawns = [e for e in log if e["action"] == "trainer.process_spawn"]
    assert len(spawns) == 2  # the launcher starting its two workers, reported, not hidden
    assert not list(result.artifact_dir.glob("*.pt")) and not list(
        result.artifact_dir.glob("*.bin"))


@pytest.mark.slow
def test_two_identical_two_process_runs_give_the_same_adapter(train_home: Home,
                                                             pass_file: Path,
                                                             tmp_path: Path) -> None:
    """Same recipe, records, seed, threads and process count: the same adapter digest (the
    shards, the per-rank dropout seeds and gloo's two-rank all-reduce are deterministic)."""
    recipe = _two_process_recipe(tmp_path / "r.toml")
    first, second = (train(train_home, recipe, passphrase_file=str(pass_file),
                           records=memory_records()) for _ in range(2))
    assert first.run_id != second.run_id
    assert first.adapter_sha256 == second.adapter_sha256


@pytest.mark.netns
def test_loopback_brought_up_inside_the_namespace_still_reaches_nothing(
        tmp_path: Path, listener: tuple[int, list[object]]) -> None:
    """With the namespace's loopback up (as for a multi-process rendezvous), every route to
    a listener on the parent's loopback still fails: the namespace has its own loopback."""
    port, accepted = listener
    events = probe_isolation(Home(tmp_path / "home"), "network", host="127.0.0.1", port=port,
                             loopback_up=True)
    probes = [e for e in events if e["type"] == "probe"]
    assert len(probes) == 8
    for event in probes:
        assert "ECONNREFUSED" in event["outcome"] or "refused" in event["outcome"], event
    assert accepted == []
