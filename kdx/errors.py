"""User-facing errors: each carries one line that names the problem and what to do."""


class KdxError(Exception):
    """An input or configuration problem the user can fix; the CLI prints it as one line and exits 2."""


class ConfigError(KdxError):
    """A configuration value is out of range, of the wrong type, or names an unknown option."""


class DataError(KdxError):
    """A dataset is missing, unreadable, corrupt or unusable for the protocol."""


class TrainingError(KdxError):
    """Training diverged (non-finite loss or logits): the message names the model, seed, epoch and cause."""


class NotApplicable(ConfigError):
    """The distillation objective does not apply to this task or these models (a methods sweep skips it)."""


class ExportError(KdxError):
    """A model cannot be exported, or its export does not reproduce kdx's predictions (parity check)."""


class MissingExtra(KdxError):
    """An optional capability needs an extra that is not installed: the message names it."""


class NoSpace(KdxError):
    """A write failed because the disk under the cache or the run folder is full: the message names the folder."""
