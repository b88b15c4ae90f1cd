"""The artifact's model card: `README.md` in the Hugging Face format (YAML metadata, then
Markdown), written into the staging directory before signing so the signature covers it.

Built from the run's report and provenance only: digests, counts, settings and the privacy
verdict; never record text (the eval generations in report.json stay out of it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.fsutil import atomic_write_text

CARD = "README.md"
TAGS = ("peft", "lora", "qlora", "air-gapped-appliance", "text-generation")
LIMITATIONS = (
    "Trained on a scrubbed dataset: PII the scrubber did not detect (see the residual counts "
    "in the signed provenance) may still have been learnt.",
    "The evaluation is the loss on a held-out split of the same dataset; it says nothing "
    "about quality on other data, safety or factual accuracy.",
    "The privacy check (when run) measures exposure of planted canaries; it cannot show "
    "that no other record was memorised.",
    "The adapter must be applied to exactly the base model named here (check its digest); "
    "on any other base its behaviour is undefined.",
)


def _yaml(value: Any) -> str:
    """A YAML flow scalar: JSON strings and numbers are valid YAML."""
    return json.dumps(value, ensure_ascii=False)


def front_matter(base_model: str, license_: str, dataset: dict[str, Any],
                 run_id: str, evals: dict[str, Any]) -> str:
    """The YAML block the Hub reads: base model, library, tags, licence, eval results."""
    lines = ["---", f"base_model: {_yaml(base_model)}", "base_model_relation: adapter",
             "library_name: peft", f"license: {_yaml(license_)}",
             "pipeline_tag: text-generation", "tags:"]
    lines += [f"- {_yaml(tag)}" for tag in TAGS]
    metrics = [(f"eval loss {phase}", "loss", values["loss"]) for phase, values in
               evals.items() if isinstance(values, dict) and "loss" in values]
    if metrics:
        lines += ["model-index:", f"- name: {_yaml(run_id)}", "  results:",
                  "  - task:", "      type: text-generation",
                  "    dataset:", f"      name: {_yaml(dataset.get('name', 'dataset'))}",
                  "      type: appliance-vault", "      split: eval",
                  "    metrics:"]
        for name, kind, value in metrics:
            lines += [f"    - name: {_yaml(name)}", f"      type: {kind}",
                      f"      value: {_yaml(value)}"]
    lines.append("---")
    return "\n".join(lines)


def _privacy(prov: dict[str, Any]) -> str:
    privacy = prov.get("privacy")
    if not isinstance(privacy, dict):
        return "not run for this artifact (run `appliance privacy-check` on a canary run)"
    return f"{privacy.get('verdict', 'unknown')} (method {privacy.get('method', '?')})"


def body(prov: dict[str, Any], license_: str) -> str:
    """The Markdown body: what the adapter is, how to load it, what produced it."""
    base = prov["base_model"]
    origin = base.get("origin") or {}
    dataset = prov["dataset"]
    evals = prov.get("eval") or {}
    recipe = prov.get("recipe") or {}
    lora = recipe.get("lora") or {}
    size = int(dataset.get("train_records", 0)) + int(dataset.get("eval_records", 0))
    rows = [f"| {phase} | {values.get('loss')} | {values.get('perplexity')} |"
            for phase, values in evals.items() if isinstance(values, dict)]
    made_from = f"`{origin.get('format', '?')}`"
    if origin.get("conversion"):
        made_from += (f" file `{origin.get('file')}` ({origin.get('file_type')}), "
                      f"{origin['conversion']}")
    return "\n".join([
        f"# QLoRA adapter `{prov['run_id']}` for `{base['name']}`",
        "",
        f"A LoRA adapter (rank {lora.get('rank')}, alpha {lora.get('alpha')}, modules "
        f"{', '.join(lora.get('target_modules') or [])}) trained by the air-gapped secure "
        f"training appliance {__version__} in a network-isolated child process. Licence of "
        f"the base model: {license_}.",
        "",
        "## How to load it",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        "base = AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR)",
        "model = PeftModel.from_pretrained(base, ARTIFACT_DIR)",
        "tokenizer = AutoTokenizer.from_pretrained(ARTIFACT_DIR)  # chat template included",
        "```",
        "",
        f"`AutoPeftModelForCausalLM.from_pretrained(ARTIFACT_DIR)` works too when the base "
        f"model directory is reachable as `{base['name']}` (the adapter's "
        "`base_model_name_or_path`), for example from the directory that holds it.",
        "",
        "## Base model",
        "",
        f"- name: `{base['name']}`",
        f"- weights root digest: `{base.get('digest')}`",
        f"- source digest: `{base.get('source_digest')}`",
        f"- made from: {made_from}",
        "",
        "## Evaluation (held-out split)",
        "",
        "| phase | loss | perplexity |",
        "|---|---|---|",
        *rows,
        "",
        "## Data, policy and privacy",
        "",
        f"- dataset: `{dataset.get('name')}`, digest `{dataset.get('digest')}`, {size} "
        f"records ({dataset.get('train_records')} train, {dataset.get('eval_records')} eval), "
        "PII-scrubbed and stored encrypted; never part of this artifact",
        f"- policy digest: `{prov.get('policy_digest')}`",
        f"- privacy check: {_privacy(prov)}",
        f"- network isolation: {(prov.get('isolation') or {}).get('network')}",
        "",
        "## Limitations",
        "",
        *[f"- {line}" for line in LIMITATIONS],
        "",
        "## Verifying",
        "",
        "Every file here, this card included, is covered by `model.sig` (OpenSSF "
        "model-signing v1.0) and the SLSA provenance in `provenance.sigstore.json`. Check "
        "them with the signer's key from `appliance keys export`, never with the "
        "`signer.pub.pem` inside the artifact (see the appliance's docs/verifying.md).",
        "",
    ])


def write_card(staging: Path, prov: dict[str, Any]) -> Path:
    """Write `README.md` into the staging directory from the run's provenance."""
    base = prov["base_model"]
    license_ = (base.get("origin") or {}).get("license") or "other"
    card = front_matter(str(base.get("upstream") or base["name"]), str(license_),
                        prov["dataset"], str(prov["run_id"]), prov.get("eval") or {})
    path = staging / CARD
    atomic_write_text(path, card + "\n\n" + body(prov, str(license_)), 0o644)
    return path
