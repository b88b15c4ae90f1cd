"""An artifact's verification and signed provenance, rendered for reading: signature, files,
policy, data, base model, code, training, privacy, export."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

NOT_MEASURED = ("not measured. Press p to run the canary exposure check on this artifact "
                "(or appliance privacy-check DIR); its dataset must have been imported with "
                "canaries")
METHOD = ("Secret Sharer exposure (Carlini et al. 2019): each planted canary's secret is "
          "ranked by the model's loss among {m} look-alike candidates; exposure = "
          "log2(M+1) - log2(rank)")
LIBRARIES_SHOWN = ("torch", "transformers", "peft", "bitsandbytes", "presidio-analyzer",
                   "cryptography")


def _row(table: Table, *cells: RenderableType) -> None:
    """Add a row; strings are data, shown as they are (never parsed as Rich markup)."""
    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def _grid() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True, min_width=11)
    table.add_column(ratio=1)
    return table


def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "?"


def _p(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "?"


def _signature(result: Mapping[str, Any]) -> Text:
    signer = result.get("signer") or "unknown"
    if result.get("ok"):
        return Text(f"ECDSA P-256 by {signer}: a key the policy trusts", style="green")
    return Text(f"does not verify: {result.get('reason')}", style="bold red")


def _policy(prov: Mapping[str, Any], active: str | None) -> Text:
    digest = prov.get("policy_digest") or "?"
    text = Text(str(digest))
    if active:
        same = active == digest
        text.append("  (the active policy)" if same else "  (the active policy differs: "
                    f"{active})", style="dim" if same else "yellow")
    return text


def _dataset(prov: Mapping[str, Any]) -> str:
    data = prov.get("dataset") or {}
    if not data:
        return "not recorded"
    return (f"{data.get('name')} {data.get('digest')}; {data.get('train_records', '?')} "
            f"train, {data.get('eval_records', '?')} eval records")


def _model(prov: Mapping[str, Any]) -> str:
    model = prov.get("base_model") or {}
    if not model:
        return "not recorded"
    source = model.get("source_digest")
    return f"{model.get('name')} {model.get('digest')}" + (f" (from {source})" if source
                                                          else "")


def _code(prov: Mapping[str, Any]) -> Text:
    code = prov.get("code") or {}
    text = Text(f"appliance {code.get('appliance_version', '?')}, source "
                f"{code.get('source_digest') or '?'}")
    if code.get("lock_digest"):
        text.append(f"\nlock {code['lock_digest']}")
    libraries = code.get("libraries") or {}
    shown = [f"{name} {libraries[name]}" for name in LIBRARIES_SHOWN if name in libraries]
    if shown:
        text.append("\n" + ", ".join(shown), style="dim")
    return text


def _recipe(recipe: Mapping[str, Any], steps: Any) -> str:
    lora, optim, train = (recipe.get(k) or {} for k in ("lora", "optim", "train"))
    limit = f"max_steps {train['max_steps']}" if train.get("max_steps") else \
        f"epochs {train.get('epochs', '?')}"
    took = f"{steps} step{'' if steps == 1 else 's'} ({limit})" if isinstance(steps, int) \
        else limit
    return (f"recipe {recipe.get('name', '?')}: {recipe.get('method', 'qlora')} rank "
            f"{lora.get('rank', '?')} alpha {lora.get('alpha', '?')}, lr "
            f"{optim.get('learning_rate', '?')}, {took}, batch "
            f"{train.get('batch_size', '?')}, seq {train.get('seq_len', '?')}, seed "
            f"{recipe.get('seed', '?')}")


def _training(prov: Mapping[str, Any], steps: Any) -> Text:
    run = prov.get("run") or {}
    text = Text(f"run {run.get('run_id') or '?'}, {run.get('started') or '?'} -> "
                f"{run.get('finished') or '?'}")
    if prov.get("recipe"):
        text.append("\n" + _recipe(prov["recipe"], steps))
    evals = prov.get("eval") or {}
    before, after = evals.get("before") or {}, evals.get("after") or {}
    if before or after:
        text.append(f"\neval loss {_num(before.get('loss'), 4)} -> "
                    f"{_num(after.get('loss'), 4)} (perplexity "
                    f"{_num(before.get('perplexity'))} -> {_num(after.get('perplexity'))}; "
                    f"{after.get('records', '?')} eval records)")
    if prov.get("adapter_sha256"):
        text.append(f"\nadapter {prov['adapter_sha256']}", style="dim")
    return text


def _isolation(prov: Mapping[str, Any]) -> str:
    iso = prov.get("isolation") or {}
    checkpoint = prov.get("audit_checkpoint") or {}
    network = iso.get("network", iso) if isinstance(iso, dict) else iso
    size = checkpoint.get("size") or checkpoint.get("tree_size")
    return f"network {network or '?'}" + (f"; audit checkpoint at entry {size}" if size
                                          else "")


def _group(group: Mapping[str, Any]) -> str:
    if not group or not group.get("n"):
        return "none"
    return f"n={group['n']} mean {_num(group.get('mean'))} max {_num(group.get('max'))} bits"


def _test(test: Mapping[str, Any], label: str) -> Text:
    significant = bool(test.get("significant"))
    text = Text(f"{label}: U = {_num(test.get('u'), 1)}, p = {_p(test.get('p_value'))} "
                f"(alpha/2 = {test.get('alpha_each', '?')}): ")
    text.append("significant" if significant else "not significant",
                style="bold red" if significant else "green")
    return text


def privacy_section(summary: Mapping[str, Any] | None,
                    limits: Sequence[str] = ()) -> RenderableType:
    """The privacy check's method, canaries, exposures, tests, extraction, threshold and
    verdict (or how to measure it), and what the test cannot show."""
    if not summary:
        return Text(NOT_MEASURED, style="yellow")
    grid = _grid()
    verdict = str(summary.get("verdict", "?"))
    line = Text(verdict.upper(), style="bold green" if verdict == "pass" else "bold red")
    reasons = summary.get("reasons") or []
    if reasons:
        line.append(": " + "; ".join(reasons))
    _row(grid, "verdict", line)
    _row(grid, "method", METHOD.format(m=summary.get("candidates", "M")))
    canaries = summary.get("canary_set") or {}
    groups = summary.get("groups") or {}
    if canaries:
        repeats = ", ".join(f"x{r}" for r in canaries.get("repeats", []))
        _row(grid, "canaries", f"{canaries.get('planted')} planted ({repeats}), "
                     f"{canaries.get('controls')} never-planted controls; set "
                     f"{canaries.get('digest')}")
    _row(grid, "exposure", f"planted {_group(groups.get('planted') or {})}; controls "
                 f"{_group(groups.get('controls') or {})}")
    _row(grid, "", Text(f"chance about {_num(summary.get('chance_mean_bits'))} bits, at "
                          f"most {_num(summary.get('resolution_bits'))} bits with "
                          f"{summary.get('candidates', '?')} candidates", style="dim"))
    test = summary.get("test") or {}
    top = summary.get("test_top_repeats") or {}
    _row(grid, "test", _test(test, "Mann-Whitney U, planted > controls"))
    if top:
        _row(grid, "", _test(top, f"planted x{top.get('repeats', '?')} > controls"))
    extraction = summary.get("extraction") or {}
    hits = int(extraction.get("hits") or 0)
    _row(grid, "extraction", Text(f"{hits} of {extraction.get('attempts', '?')} greedy "
                                    "attempts reproduced a planted secret",
                                    style="bold red" if hits else ""))
    threshold = summary.get("threshold") or {}
    limit = threshold.get("max_exposure_bits")
    _row(grid, "threshold", "none (the tests and the extraction attempt decide)" if limit
                 is None else f"mean planted {_num(threshold.get('mean_planted_bits'))} bits "
                 f"against at most {limit}: " + ("exceeded" if threshold.get("exceeded")
                                                 else "not exceeded"))
    for number, limit_text in enumerate(limits):
        _row(grid, "cannot show" if number == 0 else "", Text(limit_text, style="dim"))
    return grid


def _export(export: Mapping[str, Any] | None) -> Text:
    if not export:
        return Text("?")
    if export.get("allowed"):
        return Text("merged weights may be exported after verification: press e",
                    style="green")
    return Text(f"refused by the policy: {export.get('reason')}", style="yellow")


def provenance(result: Mapping[str, Any], limits: Sequence[str] = ()) -> RenderableType:
    """The verification result (`appliance.service.artifacts.describe`) as sections."""
    ok = bool(result.get("ok"))
    head = Text("VERIFIED" if ok else "NOT VERIFIED",
                style="bold green" if ok else "bold red")
    head.append(f"  {result.get('reason', '')}", style="")
    grid = _grid()
    _row(grid, "signature", _signature(result))
    _row(grid, "files", f"{result.get('files', 0)} file digests checked; root "
                 f"{result.get('root_digest') or '?'}")
    prov = result.get("provenance") or {}
    if not ok or not prov:
        return Group(head, grid)
    _row(grid, "policy", _policy(prov, result.get("active_policy_digest")))
    _row(grid, "data", _dataset(prov))
    _row(grid, "base model", _model(prov))
    _row(grid, "code", _code(prov))
    _row(grid, "training", _training(prov, result.get("total_steps")))
    _row(grid, "isolation", _isolation(prov))
    _row(grid, "export", _export(result.get("export")))
    return Group(head, grid, Text(""), Text("privacy", style="bold"),
                 privacy_section(prov.get("privacy"), limits))
