"""Recipes: strict parsing (exit 2 listing every bad key) and policy limits (exit 1 naming
the recipe key and the policy limit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import PolicyViolation, RecipeError
from appliance.policy import load_policy
from appliance.resources import shipped_policy
from appliance.train.recipe import check_against_policy, load_recipe, parse_recipe
from appliance.train.trainer import epoch_order, lr_at, total_steps
from tests.train.conftest import make_home, write_recipe

BASE = {"base_model": "m", "dataset": "d"}


def test_unknown_and_mistyped_keys_are_all_listed() -> None:
    """Every problem is named by its dotted key; values are not coerced."""
    with pytest.raises(RecipeError) as caught:
        parse_recipe({**BASE, "lora": {"rank": "8", "alhpa": 2}, "typo": 1}, "r.toml")
    text = caught.value.message
    assert "r.toml: lora.rank:" in text and "r.toml: lora.alhpa: unknown key" in text
    assert "r.toml: typo: unknown key" in text
    assert caught.value.exit_code == 2


def test_missing_required_keys() -> None:
    """base_model and dataset are required."""
    with pytest.raises(RecipeError, match="base_model: required key is missing"):
        parse_recipe({"dataset": "d"})


def test_bad_toml_is_a_recipe_error(tmp_path: Path) -> None:
    """A file that is not TOML is RecipeError with the path."""
    path = tmp_path / "r.toml"
    path.write_text("rank = = 3")
    with pytest.raises(RecipeError, match="not valid TOML") as caught:
        load_recipe(path)
    assert caught.value.where == str(path)


@pytest.mark.parametrize(("override", "needle"), [
    ({"lora": {"rank": 32}}, "lora.rank = 32 is over the policy limit training.limits."
                             "max_rank = 16"),
    ({"train": {"seq_len": 1024}}, "train.seq_len = 1024 is over the policy limit "
                                   "training.limits.max_seq_len = 512"),
    ({"train": {"epochs": 4}}, "train.epochs = 4 is over the policy limit "
                               "training.limits.max_epochs = 3"),
    ({"optim": {"learning_rate": 0.01}}, "optim.learning_rate = 0.01 is over the policy "
                                         "limit training.limits.max_learning_rate = 0.001"),
    ({"method": "lora"}, "method = 'lora' is not in the policy's training.methods"),
    ({"processes": 3}, "processes = 3 is over the policy limit training.limits."
                       "max_processes = 2"),
    ({"cluster": {"nnodes": 2, "rendezvous": "10.231.8.11:29500", "interface": "eth1"}},
     "cluster.nnodes = 2 is over the policy limit training.limits.max_nodes = 1"),
])
def test_policy_limits_name_key_and_limit(override: dict[str, object], needle: str) -> None:
    """Each excess names the recipe key, its value, and the policy key and limit."""
    policy = load_policy(shipped_policy("demo"))
    recipe = parse_recipe({**BASE, **override})
    with pytest.raises(PolicyViolation) as caught:
        check_against_policy(recipe, policy)
    assert needle in caught.value.message and caught.value.exit_code == 1


def test_schedule_and_data_order_are_pure_functions() -> None:
    """Warm-up then cosine decay; epoch order depends only on seed and epoch."""
    recipe = parse_recipe({**BASE, "optim": {"learning_rate": 1e-3, "warmup_steps": 2}})
    assert lr_at(recipe, 0, 10) == pytest.approx(5e-4)
    assert lr_at(recipe, 2, 10) == pytest.approx(1e-3)
    assert lr_at(recipe, 9, 10) < lr_at(recipe, 5, 10) < 1e-3
    assert epoch_order(3, 1, 10) == epoch_order(3, 1, 10) != epoch_order(3, 2, 10)
    assert sorted(epoch_order(3, 1, 10)) == list(range(10))
    assert total_steps(parse_recipe({**BASE, "train": {"epochs": 2, "batch_size": 3}}), 10) == 8
    # several processes: the global batch is batch_size x grad_accum x processes
    assert total_steps(parse_recipe({**BASE, "processes": 2,
                                     "train": {"epochs": 2, "batch_size": 3}}), 10) == 4


def test_cli_recipe_errors_exit_codes(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """`appliance train`: malformed recipe or --processes exit 2; over a policy limit (also
    through --processes) exit 1; one line each."""
    home = make_home(tmp_path / "home")
    bad = tmp_path / "bad.toml"
    bad.write_text('base_model = "m"\ndataset = "d"\n[lora]\nrnak = 4\n')
    done = run_cli("train", str(bad), "--home", str(home.root))
    assert done.returncode == 2 and "lora.rnak: unknown key" in done.stderr
    over = write_recipe(tmp_path / "over.toml")
    over.write_text(over.read_text().replace("rank = 4", "rank = 64"))
    done = run_cli("train", str(over), "--home", str(home.root))
    assert done.returncode == 1 and "training.limits.max_rank = 16" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    recipe = write_recipe(tmp_path / "ok.toml")
    done = run_cli("train", str(recipe), "--home", str(home.root), "--processes", "0")
    assert done.returncode == 2 and "--processes" in done.stderr
    done = run_cli("train", str(recipe), "--home", str(home.root), "--processes", "3")
    assert done.returncode == 1 and "processes = 3 is over the policy limit" in done.stderr
    assert "Traceback" not in done.stderr


def test_cluster_keys_are_checked_and_the_rendezvous_must_be_node_0() -> None:
    """A node rank past the node count or a rendezvous that is not IPV4:PORT is a recipe
    error; a rendezvous other than the policy's node 0 is a policy violation."""
    for bad in ({"nnodes": 2, "node_rank": 2, "rendezvous": "10.0.0.1:29500",
                 "interface": "eth1"},
                {"nnodes": 2, "rendezvous": "node0:29500", "interface": "eth1"}):
        with pytest.raises(RecipeError, match="cluster"):
            parse_recipe({**BASE, "cluster": bad})
    text = shipped_policy("demo").read_text().replace("max_nodes = 1", "max_nodes = 2")
    text += '\n[network.cluster]\nnodes = ["10.231.8.11", "10.231.8.12"]\n'
    from appliance.policy import parse_policy_text

    policy = parse_policy_text(text)
    recipe = parse_recipe({**BASE, "cluster": {"nnodes": 2, "rendezvous": "10.231.8.12:29500",
                                               "interface": "eth1"}})
    with pytest.raises(PolicyViolation, match=r"not node 0's address 10\.231\.8\.11"):
        check_against_policy(recipe, policy)
    fine = parse_recipe({**BASE, "cluster": {"nnodes": 2, "rendezvous": "10.231.8.11:29500",
                                             "interface": "eth1"}})
    check_against_policy(fine, policy)
