"""The strict base every policy section derives from."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints


class Section(BaseModel):
    """A frozen, strictly typed policy section: unknown keys rejected, values not coerced."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        use_attribute_docstrings=True,
        validate_default=True,
    )


SHA256_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
"""A content digest written as `sha256:` and 64 lower-case hex digits."""

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
"""A short identifier: letters, digits, dot, dash, underscore; at most 64 characters."""
