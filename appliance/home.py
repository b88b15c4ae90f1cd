"""The appliance home: one directory holding the audit log, the vault, keys and artifacts.

Resolution order (docs/interface.md): `--home DIR`, else `$APPLIANCE_HOME`, else the platform's user
data directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import HomeError

HOME_ENV = "APPLIANCE_HOME"
MARKER = "home.json"


@dataclass(frozen=True)
class Home:
    """Paths inside one appliance home. Creating a Home touches nothing on disk."""

    root: Path

    @property
    def audit_dir(self) -> Path:
        """Audit log and its checkpoints."""
        return self.root / "audit"

    @property
    def audit_log(self) -> Path:
        """The audit log, one JSON object per line (docs/interface.md)."""
        return self.audit_dir / "log.jsonl"

    @property
    def vault_dir(self) -> Path:
        """Encrypted datasets (docs/interface.md)."""
        return self.root / "vault"

    @property
    def artifacts_dir(self) -> Path:
        """One signed directory per training run (docs/interface.md)."""
        return self.root / "artifacts"

    @property
    def keys_dir(self) -> Path:
        """Sealed private keys, public keys, the sealed vault master key."""
        return self.root / "keys"

    @property
    def models_dir(self) -> Path:
        """Imported base models (safetensors)."""
        return self.root / "models"

    @property
    def runs_dir(self) -> Path:
        """Training run state and checkpoints (encrypted where they could reveal data)."""
        return self.root / "runs"

    @property
    def policy_file(self) -> Path:
        """The active policy, copied in at init."""
        return self.root / "policy" / "active.toml"

    @property
    def marker(self) -> Path:
        """Written last by init: its presence means the home is complete."""
        return self.root / MARKER

    def is_initialised(self) -> bool:
        """True when init completed in this home."""
        return self.marker.is_file()

    def require_initialised(self) -> None:
        """Raise HomeError unless init completed here. Commands check their home through
        `appliance.trust.require_home`, which adds the checks made without the passphrase."""
        if not self.is_initialised():
            raise HomeError("the appliance home is not initialised", where=str(self.root),
                            hint="run appliance init (or pass --home DIR)")


def default_home_dir() -> Path:
    """The platform's user data directory for the appliance."""
    import platformdirs

    return Path(platformdirs.user_data_dir("appliance", appauthor=False))


def resolve_home(arg: str | os.PathLike[str] | None = None) -> Home:
    """The home named by `--home`, else `$APPLIANCE_HOME`, else the platform default."""
    if arg:
        return Home(Path(arg).expanduser().absolute())
    env = os.environ.get(HOME_ENV)
    if env:
        return Home(Path(env).expanduser().absolute())
    return Home(default_home_dir())
