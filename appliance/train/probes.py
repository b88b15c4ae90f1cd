"""Isolation self-tests run inside the trainer child (job `probe`): network attempts by
every route against a target the parent names, and a real NF4 forward pass, each reported
as an event, and (`escape`) every escape the threat model names. They prove the sandbox
blocks and the tripwire reports, with the real mechanisms; the test suite uses them."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

Emit = Callable[..., None]


def via_socket(host: str, port: int) -> str:
    """Connect with the socket module."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        sock.connect((host, port))
        return "connected"


def via_underscore_socket(host: str, port: int) -> str:
    """Connect with the _socket C module directly."""
    import _socket

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        sock.settimeout(3)
        sock.connect((host, port))
        return "connected"
    finally:
        sock.close()


def via_ctypes(host: str, port: int) -> str:
    """Connect with libc's socket() and connect() through ctypes (bypasses Python)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if fd < 0:
        return f"socket failed: {errno.errorcode.get(ctypes.get_errno(), '?')}"
    try:
        addr = struct.pack("!HH4s8x", socket.AF_INET, port, socket.inet_aton(host))
        addr = struct.pack("=H", socket.AF_INET) + addr[2:]
        buf = ctypes.create_string_buffer(addr)
        rc = libc.connect(fd, buf, len(addr))
        if rc == 0:
            return "connected"
        return f"connect failed: {errno.errorcode.get(ctypes.get_errno(), '?')}"
    finally:
        libc.close(fd)


def via_child_process(host: str, port: int) -> str:
    """Connect from a separate Python process started by the trainer."""
    code = ("import socket,sys\n"
            "s=socket.socket(); s.settimeout(3)\n"
            f"s.connect(({host!r},{port}))\n"
            "print('connected')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, check=False)
    return "connected" if "connected" in done.stdout else \
        f"child failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:200]}"


ROUTES: dict[str, Callable[[str, int], str]] = {
    "socket": via_socket, "_socket": via_underscore_socket, "ctypes": via_ctypes,
    "child_process": via_child_process,
}


def _attempt(route: str, host: str, port: int) -> str:
    try:
        return ROUTES[route](host, port)
    except OSError as exc:
        return f"{type(exc).__name__}: {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]


def network_routes(job: dict[str, Any], emit: Emit) -> None:
    """Try every route, in the main thread and from a thread, reporting each outcome
    (with `loopback_up`, after bringing up the namespace's loopback as a multi-process run
    does)."""
    host, port = job["host"], int(job["port"])
    if job.get("loopback_up"):
        from appliance import netns

        netns.loopback_up()
    for route in ROUTES:
        emit("probe", route=route, thread=False, outcome=_attempt(route, host, port))
        box: dict[str, str] = {}

        def attempt(r: str = route, out: dict[str, str] = box) -> None:
            out["o"] = _attempt(r, host, port)

        worker = threading.Thread(target=attempt, name=f"probe-{route}")
        worker.start()
        worker.join(timeout=60)
        emit("probe", route=route, thread=True, outcome=box.get("o", "timeout"))


def nf4_forward(job: dict[str, Any], emit: Emit) -> None:
    """Load the base model in 4-bit NF4 (bitsandbytes, with LoRA) and run a real forward
    and backward pass."""
    import torch

    from appliance.train.recipe import Recipe
    from appliance.train.trainer import load_model, setup_torch

    recipe = Recipe.model_validate({"base_model": "probe", "dataset": "probe"})
    device = setup_torch(recipe)
    tokenizer, model = load_model(job["model_dir"], recipe, device)
    ids = torch.tensor([tokenizer("The network stays closed.")["input_ids"]], device=device)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    linear = type(model.base_model.model.model.layers[0].mlp.down_proj).__name__
    emit("probe", route="nf4_forward", thread=False,
         outcome=f"ok loss={float(out.loss):.3f} layer={linear}")


def run(job: dict[str, Any], emit: Emit) -> int:
    """Run the probe named by job['probe']."""
    kind = job["probe"]
    if kind == "network":
        network_routes(job, emit)
    elif kind == "nf4":
        nf4_forward(job, emit)
    elif kind == "escape":  # hostile code: appliance.sandbox.escapes
        from appliance.sandbox import escapes

        escapes.run(job, emit)
    emit("interfaces", names=[n for _, n in socket.if_nameindex()], pid=os.getpid())
    emit("done")
    return 0
