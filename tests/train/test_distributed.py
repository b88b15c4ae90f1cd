"""Multi-process (DDP, gloo on CPU) training inside the run's network namespace: two real
workers on the real base model step in lockstep, end with identical adapters (the
gradients were all-reduced), rank 0 alone writes the signed artifact, nothing reaches out,
a cancel stops every rank at one step and the resumed run is bit-identical to a straight
one; and the data sharding gives every rank its own part of each global batch."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.service.artifacts import verify
from appliance.service.train import probe_isolation, train
from appliance.train.distributed import World, padded, share
from tests.train.conftest import memory_records, write_recipe
from tests.train.test_training import _run_id, _run_until, _start


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


def _two_process_recipe(path: Path, steps: int = 2) -> Path:
    text = write_recipe(path, steps=steps, ckpt=100 if steps > 2 else 1).read_text()
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
    result = train(train_home, recipe, passphrase=read_passphrase(pass_file),
                   records=memory_records(), on_event=events.append)
    report = json.loads((result.artifact_dir / "report.json").read_text())
    workers = report["distributed"]["workers"]
    assert [w["rank"] for w in workers] == [0, 1]
    assert {w["steps"] for w in workers} == {2}
    assert {w["backend"] for w in workers} == {"gloo"}
    assert workers[0]["params_sha256"] == workers[1]["params_sha256"]
    (launched,) = [e for e in events if e["type"] == "workers_started"]
    assert launched["world_size"] == 2 and launched["loopback"] == "up"
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2]  # rank 0 reports
    assert verify(train_home, result.artifact_dir)["ok"] is True
    log = _audit(train_home)
    start = next(e for e in log if e["action"] == "train.start")
    assert start["processes"] == 2
    assert [e for e in log if e["action"] == "network.attempt"] == []
    spawns = [e for e in log if e["action"] == "trainer.process_spawn"]
    assert len(spawns) == 2  # the launcher starting its two workers, reported, not hidden
    assert not list(result.artifact_dir.glob("*.pt")) and not list(
        result.artifact_dir.glob("*.bin"))


@pytest.mark.slow
def test_two_process_cancel_stops_every_rank_at_one_step_and_resumes_bit_identically(
        train_home: Home, pass_file: Path, tmp_path: Path) -> None:
    """SIGTERM after the first step of a 2-process run: one `signal`, both ranks stop at the
    same step boundary, rank 0 writes the one checkpoint; the resumed run's adapter is
    bit-identical to a straight 2-process run's (and both ranks agree again)."""
    recipe = _two_process_recipe(tmp_path / "r.toml", steps=4)
    straight = train(train_home, recipe, passphrase=read_passphrase(pass_file),
                     records=memory_records())
    train_home.runs_dir.rename(tmp_path / "straight-runs")
    proc = _start(train_home, recipe, pass_file)
    _run_until(proc, "step", 1)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "checkpoint saved" in err, err
    after = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert [e["type"] for e in after].count("signal") == 1
    (stopped,) = [e for e in after if e["type"] == "stopped"]
    assert stopped["rank"] == 0 and stopped["checkpoint"] is True
    run_id = _run_id(train_home)
    ckpt = train_home.runs_dir / run_id / "checkpoints"
    assert json.loads((ckpt / "latest.json").read_text())["step"] == stopped["step"]
    resumed = train(train_home, resume=run_id, passphrase=read_passphrase(pass_file),
                    records=memory_records())
    assert resumed.adapter_sha256 == straight.adapter_sha256
    workers = json.loads((resumed.artifact_dir / "report.json").read_text())[
        "distributed"]["workers"]
    assert len({w["params_sha256"] for w in workers}) == 1


@pytest.mark.slow
def test_a_worker_failing_at_the_end_fails_the_run_and_is_never_taken_for_a_cancel(
        train_home: Home, pass_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 1 exits with status 7 once its work is done (the test-only
    APPLIANCE_TEST_WORKER_EXIT_AT_END), as a crash at exit would; torchrun's agent then
    sends SIGTERM to rank 0. Every rank now waits for rank 0's generation before leaving,
    so rank 0 is never interrupted mid-work, and the run fails naming rank 1 and its
    status: no `stopped`, no checkpoint. (Before, rank 0 generated alone while rank 1
    left: the same exit made it save a checkpoint and report `stopped`, and the run ended
    `training stopped at step 2 of 2`, the failure seen once in the resumed run.)"""
    from appliance.errors import TrainingError

    monkeypatch.setenv("APPLIANCE_TEST_WORKER_EXIT_AT_END", "1:7")
    events: list[dict[str, object]] = []
    with pytest.raises(TrainingError) as raised:
        train(train_home, _two_process_recipe(tmp_path / "r.toml"),
              passphrase=read_passphrase(pass_file), records=memory_records(),
              on_event=events.append)
    assert "training worker of rank 1 exited with status 7" in raised.value.line(), \
        raised.value.line()
    assert not [e for e in events if e["type"] == "stopped"]
    assert [e["type"] for e in events].count("done") == 1  # rank 0 had finished its work
    log = _audit(train_home)
    assert [e["action"] for e in log if e["action"].startswith("train.")][-1] == \
        "train.failed"


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


def test_job_channel_serves_each_rank_once_and_only_with_the_token() -> None:
    """A greeting with the wrong token, a rank of another node, or a replay of a served
    (rank, restart) is refused; the right one gets its rank."""
    import io

    from appliance.train import jobchannel

    def greet(token: str, rank: int, restart: int = 0) -> io.BytesIO:
        return io.BytesIO(json.dumps({"token": token, "rank": rank,
                                      "restart": restart}).encode() + b"\n")

    served: set[tuple[int, int]] = set()
    ranks = range(2, 4)  # node 1 of a 2 x 2 run
    assert jobchannel.hello(greet("t", 2), "t", served, ranks) == 2
    for stream in (greet("x", 3), greet("t", 0), greet("t", 2), io.BytesIO(b"{}\n")):
        with pytest.raises(jobchannel.Refused):
            jobchannel.hello(stream, "t", served, ranks)
    assert jobchannel.hello(greet("t", 2, restart=1), "t", served, ranks) == 2


def test_a_look_up_of_the_sandbox_own_host_name_is_not_a_network_attempt() -> None:
    """torchrun's agent resolves its own host name for its records; any other name is
    still reported."""
    import socket

    from appliance.train.tripwire import classify

    assert classify("socket.gethostbyaddr", (socket.gethostname(),)) is None
    found = classify("socket.gethostbyaddr", ("exfil.example.org",))
    assert found is not None and found["action"] == "network.attempt"


def test_a_stopped_rank_is_a_cancel_only_when_the_node_was_signalled_or_all_stopped() -> None:
    """torchrun's agent SIGTERMs every worker when one fails, and they then exit 3 as if
    cancelled: without a signal to this node, a stopped rank beside a failed one is the
    failure of the failed one (named, with its signal), never a stop."""
    from appliance.train.launcher import exit_status, failures

    assert failures({0: 3, 1: 1}, signalled=False) == {1: 1}
    assert failures({0: 3, 1: -9}, signalled=False) == {1: -9}
    assert failures({1: 3}, signalled=False) == {}  # a cancel on another node
    assert failures({0: 1, 1: 3}, signalled=True) == {}  # a peer left during our cancel
    assert exit_status(-9) == "was killed by SIGKILL"
    assert exit_status(1) == "exited with status 1"


def test_a_resumed_cluster_run_keeps_its_cluster_settings(tmp_path: Path) -> None:
    """--resume reads the [cluster] settings from run.json; flags given again must match,
    else one line naming the flag (exit 2)."""
    from appliance.errors import UsageError
    from appliance.service.train import _resume_run
    from appliance.train.recipe import load_recipe, parse_recipe

    data = load_recipe(write_recipe(tmp_path / "r.toml")).model_dump()
    cluster = {"nnodes": 2, "node_rank": 1, "rendezvous": "10.231.8.11:29500",
               "interface": "eth1"}
    recipe = parse_recipe({**data, "cluster": cluster})
    home = Home(tmp_path / "home")
    run_dir = home.runs_dir / "run1"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"status": "running",
                                                  "recipe": recipe.model_dump()}))
    plan = _resume_run(home, "run1", None, {})
    assert plan.recipe.cluster.node_rank == 1 and plan.recipe.cluster.interface == "eth1"
    assert _resume_run(home, "run1", None, {"node_rank": 1, "nnodes": 2}).resumed
    with pytest.raises(UsageError) as raised:
        _resume_run(home, "run1", None, {"node_rank": 0})
    assert raised.value.exit_code == 2
    assert "--node-rank 0 differs from the 1 the run started with" in raised.value.line()
