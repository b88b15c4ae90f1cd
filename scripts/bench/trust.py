"""Benchmark of the trust primitives.

Headline: time to verify a signed 64 MiB artifact with `appliance.signing.verify_artifact`
(signature, every file's sha256, provenance) against the upstream OpenSSF `model_signing`
verifier on the same directory and bundle (ratio = upstream / ours; > 1 means we are faster).
Also reported: audit events appended per second (locked + fsynced, redaction included), log
verification rate, and signing time. The last stdout line is one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

POLICY = """[meta]
name = "bench"
[storage.argon2id]
memory_kib = 8192
iterations = 1
lanes = 1
"""
PASS = b"benchmark passphrase"


def _best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Run the benchmark and print one JSON line last."""
    import model_signing

    from appliance import audit, keys, trust
    from appliance.home import Home
    from appliance.service.artifacts import trusted_keys
    from appliance.service.audit import verify_home
    from appliance.service.home import init_home
    from appliance.signing import SIGNATURE, sign_artifact, verify_artifact

    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "policy.toml").write_text(POLICY)
        home = Home(root / "home")
        init_home(home, PASS, root / "policy.toml")
        artifact = home.artifacts_dir / "run-bench"
        artifact.mkdir()
        for i in range(4):
            (artifact / f"shard-{i}.safetensors").write_bytes(os.urandom(size_mib << 18))
        (artifact / "adapter_config.json").write_text('{"r": 8}\n')
        start = time.perf_counter()
        sign_artifact(home, artifact, PASS, {"run_id": "run-bench"})
        sign_s = time.perf_counter() - start
        trusted = trusted_keys(home)
        keys.export_public(home, root / "pub")
        pub = root / "pub" / keys.SIGNING_PUBLIC
        assert verify_artifact(artifact, trusted).ok
        ours = _best(lambda: verify_artifact(artifact, trusted))
        upstream = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub)
        baseline = _best(lambda: upstream.verify(artifact, artifact / SIGNATURE))

        n = 500
        start = time.perf_counter()
        for i in range(n):
            audit.record(home, "bench.event", i=i, digest="sha256:" + "ab" * 32,
                         note="a plain description of an event")
        record_rate = n / (time.perf_counter() - start)
        audit.unlock(home, PASS)
        audit.checkpoint(home)
        trust.forget(home)
        start = time.perf_counter()
        report = verify_home(home)
        verify_rate = report["entries"] / (time.perf_counter() - start)
        assert report["ok"]

    result = {"name": "trust", "metric": f"verify a signed {size_mib} MiB artifact",
              "ours": round(ours, 4), "baseline": round(baseline, 4), "unit": "s",
              "ratio": round(baseline / ours, 3),
              "baseline_is": "model_signing 1.1.1 verifying.Config().use_elliptic_key_verifier",
              "sign_s": round(sign_s, 4), "audit_records_per_s": round(record_rate, 1),
              "audit_verify_entries_per_s": round(verify_rate, 1),
              "cpus": os.cpu_count()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
