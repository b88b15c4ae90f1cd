"""PII scrubbing of fine-tuning records: Presidio, offline, fail closed.

Modules: `offline` (environment and the digest-pinned NER model), `recognizers` (detectors
beyond Presidio's defaults), `engine` (batched, prefiltered, fail-closed analysis),
`operators` (placeholder, pseudonym, mask, redact, hash), `residual` (the independent second
pass), `evaluate` (scoring on labeled files). Heavy libraries are imported lazily.
"""
