"""Exports of a verified adapter artifact (merged weights), signed like an artifact so the
chain of custody continues past the adapter."""
