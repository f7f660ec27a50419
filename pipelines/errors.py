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


class DatabaseUnavailableError(ConfigError):
    """PostgreSQL did not answer (down, restarting, refusing connections): not a wrong
    setting, but reported like one at start-up because the fix is often the same."""


class ConcurrentRunError(PipelineError):
    """Another run holds the same data (a period's load, a materialization) for too long."""


class NewestPeriodWithdrawnError(PipelineError):
    """The portal's newest period is older than one already captured: a file left the page,
    and the scheduled run would capture an older period and report the newer one's build."""


class CaptureRefusedError(PipelineError):
    """A downloaded file is not plausible (no loadable row, too many quarantined lines):
    the period keeps its previous data."""


class StorageError(PipelineError):
    """A local folder (DATA_DIR, LOG_DIR) cannot be written: read-only, full, missing."""


_OS_REASONS = {
    28: "disco cheio",
    30: "sistema de arquivos somente leitura",
    13: "permissão negada",
    2: "pasta inexistente",
    20: "o caminho não é uma pasta",
    122: "cota de disco excedida",
}


def storage_error(variable: str, path, error: OSError) -> StorageError:
    """A failure to write ``path`` under the folder named by ``variable``, said plainly."""
    reason = _OS_REASONS.get(error.errno, error.strerror or str(error))
    return StorageError(
        f"Não foi possível gravar em {path} (pasta de {variable}): {reason} [Errno {error.errno}]. "
        f"Libere espaço ou aponte {variable} no .env para uma pasta gravável."
    )
