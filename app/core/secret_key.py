"""The token key's own rule: a process that signs tokens refuses a public or guessable SECRET_KEY."""
from __future__ import annotations

from typing import TYPE_CHECKING

from app.core.setting_values import ConfigError

if TYPE_CHECKING:
    from app.core.config import Config

# The documented default: anyone can read it, so it never signs tokens in production.
DEVELOPMENT_SECRET_KEY = "dev-only-secret-change-me"
MIN_SECRET_KEY_BYTES = 32


def check_secret_key(config: Config) -> None:
    """Refuse a public or guessable token key unless development mode says otherwise."""
    if config.allow_insecure_secret_key:
        return
    if config.secret_key == DEVELOPMENT_SECRET_KEY:
        raise ConfigError("SECRET_KEY is the documented development default; set a random value of at least "
                          f"{MIN_SECRET_KEY_BYTES} bytes (or ALLOW_INSECURE_SECRET_KEY=1 in development)")
    if len(config.secret_key.encode()) < MIN_SECRET_KEY_BYTES:
        raise ConfigError(f"SECRET_KEY is shorter than {MIN_SECRET_KEY_BYTES} bytes; set a longer random "
                          "value (or ALLOW_INSECURE_SECRET_KEY=1 in development)")
