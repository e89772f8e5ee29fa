"""Errors a user can cause. The CLI prints their message as one red line and exits 2."""


class UserError(Exception):
    """Something the user can fix: the message says what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(UserError):
    """officescore.toml or a flag is invalid."""


class DataError(UserError):
    """An export, data set or results file is unusable."""


class BadImageError(UserError):
    """A file is missing, not an image, truncated, or too large to decode safely."""


class ModelError(UserError):
    """A checkpoint or weights file is missing, corrupt, or does not fit."""


class WeightsUnavailable(ModelError):
    """Pretrained weights that cannot be downloaded here. The message ends with `advice` (train's
    own flag by default); another command gives its own with `reason`."""

    def __init__(self, reason: str, advice: str = "or use --weights none") -> None:
        super().__init__(f"{reason}, {advice}")
        self.reason = reason


class QuotaExhaustedError(UserError):
    """A provider's daily quota is used up."""
