"""`appliance dataset list|show|sample|rm|export` and `appliance passphrase change`.

`dataset import` (intake and scrubbing) is added to the same group by `import_cmd`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from appliance.cli._common import (
    add_command,
    add_group,
    home_of,
    new_passphrase,
    output,
    passphrase,
)
from appliance.cli.import_cmd import add_import_action
from appliance.errors import EXIT_OK

if TYPE_CHECKING:
    from appliance.vault.store import DatasetMetadata, DatasetSummary


def _list(args: argparse.Namespace) -> int:
    from appliance.service.datasets import list_datasets

    rows = list_datasets(home_of(args))
    output(args, {"datasets": rows}, lambda: _print_datasets(rows))
    return EXIT_OK


def _print_datasets(rows: list[DatasetSummary]) -> None:
    if not rows:
        print("no datasets (appliance dataset import FILE --name NAME adds one)")
        return
    print(f"{'NAME':<24} {'TRAIN':>8} {'EVAL':>7} {'SIZE':>11}  {'CREATED':<25} DIGEST")
    for row in rows:
        if row["problem"]:
            print(f"{row['name']:<24} {'?':>8} {'?':>7} {row['size_bytes']:>11}  "
                  f"{'?':<25} ({row['problem']})")
            continue
        print(f"{row['name']:<24} {row['train_count']:>8} {row['eval_count']:>7} "
              f"{row['size_bytes']:>11}  {row['created']:<25} {row['digest']}")


def _show(args: argparse.Namespace) -> int:
    from appliance.service.datasets import show_dataset

    shown = show_dataset(home_of(args), args.name, passphrase=passphrase(args))
    output(args, shown, lambda: _print_shown(shown))
    return EXIT_OK


def _print_shown(shown: DatasetMetadata) -> None:
    for key in ("name", "dataset_id", "created", "train", "eval", "digest", "size_bytes",
                "cipher", "format_version", "verified"):
        print(f"{key + ':':<16}{shown[key]}")
    print("metadata:")
    print(json.dumps(shown["metadata"], indent=2, sort_keys=True, ensure_ascii=False))


def _sample(args: argparse.Namespace) -> int:
    from appliance.service.datasets import sample_dataset

    records = sample_dataset(home_of(args), args.name, n=args.n, split=args.split,
                             seed=args.seed, passphrase=passphrase(args))
    for record in records:
        sys.stdout.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from appliance.service.datasets import verify_dataset

    done = verify_dataset(home_of(args), args.name, passphrase=passphrase(args))
    output(args, done, lambda: print(f"dataset {done['name']!r}: ok ({done['count']} records, "
                                     f"{done['digest']})"))
    return EXIT_OK


def _rm(args: argparse.Namespace) -> int:
    from appliance.service.datasets import remove_dataset

    removed = remove_dataset(home_of(args), args.name)
    output(args, {"removed": removed["name"], "digest": removed["digest"]},
           lambda: print(f"removed dataset {removed['name']!r} (its wrapped key was destroyed)"))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from appliance.service.datasets import export_dataset

    done = export_dataset(home_of(args), args.name, args.out,
                          passphrase=passphrase(args),
                          recipient_passphrase=new_passphrase(args.recipient_passphrase_file,
                                                              "Recipient passphrase: "))
    output(args, done, lambda: print(f"exported dataset {done['name']!r} to {done['out']} "
                                     "(encrypted; its key is wrapped for the recipient "
                                     "passphrase)"))
    return EXIT_OK


def _passphrase_change(args: argparse.Namespace) -> int:
    from appliance.service.datasets import change_passphrase

    current = passphrase(args, prompt="Current passphrase: ")
    change_passphrase(home_of(args), passphrase=current,
                      new_passphrase=new_passphrase(args.new_passphrase_file,
                                                    "New passphrase: "))
    print("passphrase changed (dataset files are unchanged; the old passphrase no longer "
          "works)")
    return EXIT_OK


def _name_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="dataset name")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `dataset` and `passphrase` command groups."""
    group = add_group(sub, common, "dataset", "inspect, sample, remove and export encrypted "
                      "datasets")
    add_import_action(group, common)
    cmd = add_command(group, common, "list", "list datasets (no passphrase needed)")
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.set_defaults(handler=_list)
    cmd = add_command(group, common, "show", "verified metadata and scrub report of a dataset")
    _name_arg(cmd)
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.set_defaults(handler=_show)
    cmd = add_command(group, common, "sample", "print scrubbed records, decrypted in memory")
    _name_arg(cmd)
    cmd.add_argument("-n", type=int, default=5, metavar="K", help="how many (default 5)")
    cmd.add_argument("--split", choices=("train", "eval", "all"), default="train",
                     help="which split (default train)")
    cmd.add_argument("--seed", type=int, default=None,
                     help="pick K records at random with this seed (default: the first K)")
    cmd.set_defaults(handler=_sample)
    cmd = add_command(group, common, "verify", "decrypt and check a whole dataset in memory "
                      "(prints no record)")
    _name_arg(cmd)
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.set_defaults(handler=_verify)
    cmd = add_command(group, common, "rm", "delete a dataset, destroying its wrapped key")
    _name_arg(cmd)
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.set_defaults(handler=_rm)
    cmd = add_command(group, common, "export", "write an encrypted copy whose key is wrapped "
                      "for a recipient passphrase (only if the policy allows it)")
    _name_arg(cmd)
    cmd.add_argument("--out", required=True, metavar="FILE", help="the file to create")
    cmd.add_argument("--recipient-passphrase-file", metavar="FILE", default=None,
                     help="the recipient's passphrase (else a prompt)")
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.set_defaults(handler=_export)

    pw = add_group(sub, common, "passphrase", "manage the vault passphrase")
    cmd = add_command(pw, common, "change", "re-seal the vault master key under a new "
                      "passphrase (dataset bytes unchanged)")
    cmd.add_argument("--new-passphrase-file", metavar="FILE", default=None,
                     help="read the new passphrase from FILE (else a prompt)")
    cmd.set_defaults(handler=_passphrase_change)
