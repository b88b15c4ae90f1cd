"""Fixtures for the training area: the default base model converted once per session,
and fresh homes that hard-link it (no copy of the 540 MB weights per test)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.home import Home
from appliance.resources import shipped_policy

PASSPHRASE = "correct horse battery staple\n"


def make_home(root: Path, policy_text: str | None = None) -> Home:
    """An initialised home at `root` (`init_home`: keys, vault master key, signed audit
    log) under `policy_text`, the demo policy by default."""
    from appliance.service.home import init_home

    source = root.parent / f".{root.name}-policy.toml"
    source.write_text(policy_text or shipped_policy("demo").read_text())
    home = Home(root)
    init_home(home, PASSPHRASE.strip().encode(), source)
    return home


@pytest.fixture(scope="session")
def converted_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HOME/models/<default> of a session home where the default GGUF was imported once."""
    from appliance.models import importer
    from appliance.policy import load_policy

    root = tmp_path_factory.mktemp("model-home")
    home = make_home(root / "home")
    record, _, _ = importer.import_model(home, load_policy(home.policy_file),
                                         importer.default_gguf(), importer.DEFAULT_NAME)
    return record.path


def place_model(home: Home, converted_model: Path) -> Home:
    """`home` holding the converted default model (hard links), recorded in its manifest
    as `model import` with the passphrase would (training needs that record)."""
    from appliance.service.models import record_model

    shutil.copytree(converted_model, home.models_dir / converted_model.name,
                    copy_function=os.link)
    record_model(home, converted_model.name, PASSPHRASE.strip().encode())
    return home


@pytest.fixture
def train_home(tmp_path: Path, converted_model: Path) -> Home:
    """A fresh initialised home holding the default model (hard links)."""
    return place_model(make_home(tmp_path / "home"), converted_model)


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP listener on the parent's loopback that records every accepted connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, addr = server.accept()
            except TimeoutError:
                continue
            accepted.append(addr)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    server.close()


@pytest.fixture
def pass_file(tmp_path: Path) -> Path:
    """The passphrase of homes made by make_home."""
    path = tmp_path / "pass"
    path.write_text(PASSPHRASE)
    return path


CHAT = [
    {"messages": [{"role": "user", "content": f"What colour is item {i}?"},
                  {"role": "assistant", "content": f"Item {i} is {c}."}]}
    for i, c in enumerate(["red", "blue", "green", "amber", "violet", "teal", "grey",
                           "olive", "navy", "pink", "gold", "white"])
]
ALPACA = [{"instruction": "Add the numbers.", "input": f"{i} and {i + 1}",
           "output": f"The sum is {2 * i + 1}."} for i in range(4)]


def memory_records(train: list[dict[str, Any]] | None = None,
                   evals: list[dict[str, Any]] | None = None) -> Callable[..., Any]:
    """A records provider serving fixed in-memory splits (stands in for the vault)."""
    splits = {"train": train if train is not None else CHAT[:8] + ALPACA[:2],
              "eval": evals if evals is not None else CHAT[8:] + ALPACA[2:]}

    def provider(home: Home, policy: Any, master_key: bytes, name: str,
                 split: str) -> list[dict[str, Any]]:
        return [dict(r) for r in splits[split]]

    return provider


TINY_RECIPE = """
name = "tiny"
base_model = "smollm2-135m-instruct"
dataset = "demo"
seed = 7
threads = 2

[lora]
rank = 4
alpha = 8
dropout = 0.1
target_modules = ["q_proj", "v_proj"]

[optim]
learning_rate = 0.0005
warmup_steps = 1

[train]
epochs = 1
max_steps = {steps}
batch_size = 2
seq_len = 64
checkpoint_every = {ckpt}

[eval]
max_records = 4
generations = 1
generation_tokens = 6
general_paragraphs = 4
"""


def write_recipe(path: Path, steps: int = 3, ckpt: int = 2) -> Path:
    """A tiny recipe file."""
    path.write_text(TINY_RECIPE.format(steps=steps, ckpt=ckpt))
    return path
