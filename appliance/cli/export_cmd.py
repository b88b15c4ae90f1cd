"""`appliance export merge ARTIFACT --out DIR` and `appliance export gguf ARTIFACT --out
DIR|NAME.gguf [--type f16|q8_0] [--adapter-only]`."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._common import add_command, add_group, home_of, output, passphrase
from appliance.errors import EXIT_OK


def _merge(args: argparse.Namespace) -> int:
    from appliance.service.export import merge

    result = merge(home_of(args), args.artifact, args.out, passphrase(args))
    output(args, result, lambda: print(
        f"merged {result['artifact']} into {result['out']} ({result['merged_root_digest']}), "
        f"signed: root {result['root_digest']}"))
    return EXIT_OK


def _gguf(args: argparse.Namespace) -> int:
    from appliance.service.export import export_gguf, export_gguf_adapter

    if args.adapter_only:
        result = export_gguf_adapter(home_of(args), args.artifact, args.out,
                                     passphrase(args))
    else:
        result = export_gguf(home_of(args), args.artifact, args.out, args.type,
                             passphrase=passphrase(args))
    output(args, result, lambda: print(
        f"wrote {result['gguf']} ({result['type']}, {result['tensors']} tensors) and a "
        f"Modelfile, signed: root {result['root_digest']}"))
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `export` command group."""
    group = add_group(sub, common, "export", "export verified results (policy-gated)")
    merge = add_command(group, common, "merge", "verify an artifact's signature, then write "
                                                "base+adapter merged safetensors weights, "
                                                "signed (needs the passphrase)")
    merge.add_argument("artifact", help="artifact directory (HOME/artifacts/RUN)")
    merge.add_argument("--out", required=True, help="output directory (must not exist)")
    merge.add_argument("--json", action="store_true", help="print the result as JSON")
    merge.set_defaults(handler=_merge)
    gguf = add_command(group, common, "gguf", "verify an artifact, merge it and write the "
                                              "merged model as a signed GGUF file with an "
                                              "Ollama Modelfile")
    gguf.add_argument("artifact", help="artifact directory (HOME/artifacts/RUN)")
    gguf.add_argument("--out", required=True,
                      help="output directory (must not exist): model.gguf, Modelfile, "
                           "signatures; or a NAME.gguf file path: the file, with "
                           "NAME.gguf.Modelfile, NAME.gguf.sig, "
                           "NAME.gguf.provenance.sigstore.json and NAME.gguf.signer.pub.pem "
                           "beside it")
    gguf.add_argument("--type", choices=("f16", "q8_0"), default="f16",
                      help="tensor type of the matrices (default f16)")
    gguf.add_argument("--adapter-only", action="store_true",
                      help="write the LoRA adapter alone as a llama.cpp GGUF adapter "
                           "(adapter.gguf or NAME.gguf, F32; no merged weights)")
    gguf.add_argument("--json", action="store_true", help="print the result as JSON")
    gguf.set_defaults(handler=_gguf)
