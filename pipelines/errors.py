"""Exceptions with messages (in Portuguese) meant to be read by the pipeline's users."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (driver errors carry long details), or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class PipelineError(Exception):
    """Base class: a failure the user can understand and act on."""


class ConfigError(PipelineError):
    """A configuration variable is missing or has a bad value."""


class PortalStructureError(PipelineError):
    """The CGU page no longer has the structure the scraper expects."""


class DownloadError(PipelineError):
    """A download failed in a way that retrying will not fix (404, HTML page, ...)."""


class TransientDownloadError(DownloadError):
    """A download failed in a way that may succeed later (timeout, 5xx, truncated)."""


class SourceFormatError(PipelineError):
    """A downloaded file cannot be read as a CGU terceirizados file."""


class RawDataMissingError(PipelineError):
    """The raw table is missing or empty: the capture flow must run first."""
