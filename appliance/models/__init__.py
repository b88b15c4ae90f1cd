"""Base models: safe import (safetensors directories, GGUF conversion), digests, policy checks."""
