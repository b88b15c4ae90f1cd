"""Dataset intake: read (JSONL / JSON array), validate, deduplicate, split.

Nothing here writes to disk: intake produces records in memory for the scrubber, and the
vault writes them encrypted, atomically, only when everything succeeded.
"""
