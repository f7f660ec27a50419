"""The one place that reads configuration: the environment, then ``.env``.

Every value has a default that works on a developer machine with a local
PostgreSQL. A bad value fails fast with a message that names the variable.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from dotenv import load_dotenv

from pipelines.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_PORTAL_URL = "https://www.gov.br/cgu/pt-br/acesso-a-informacao/dados-abertos/arquivos/terceirizados"


@dataclass(frozen=True)
class Settings:
    postgres_host: str
    postgres_port: int
    postgres_user: str
    postgres_password: str = field(repr=False)
    postgres_db: str
    portal_url: str
    data_dir: Path
    log_dir: Path
    http_timeout_seconds: float
    download_max_retries: int
    download_retry_delay_seconds: float
    dask_scheduler_address: str | None
    parallel_workers: int
    results_host: str
    results_port: int
    # Hardening limits (see .env.example): total deadline of one HTTP request, largest
    # download, largest decompressed XLSX, highest quarantined share of a file, extra
    # hosts (mirrors) whose links the portal page may point to.
    http_deadline_seconds: float = 900.0
    max_download_bytes: int = 500 * 1024 * 1024
    max_xlsx_uncompressed_bytes: int = 1024 * 1024 * 1024
    max_quarantine_share: float = 0.10
    # highest drop of a period's loadable rows against its previous capture
    max_row_drop_share: float = 0.50
    # highest share of a file's rows whose load fields (Num_Mes_Carga, Mes_Carga, Ano_Carga) name
    # another period than the link's
    max_wrong_period_share: float = 0.50
    # highest share of a column's values, per period, that the conversions may turn into NULL
    # before staging.transformed / historic_transformed refuse the period (dbt test nulled_share_at_most)
    max_nulled_share: float = 0.10
    portal_allowed_hosts: tuple[str, ...] = ()
    # How long a run waits for another run holding the same data (a period's load, a
    # materialization) before it fails saying which run is in the way.
    lock_wait_seconds: float = 1800.0

    def postgres_dsn(self, database: str | None = None) -> dict:
        """Keyword arguments for ``psycopg2.connect``."""
        return {
            "host": self.postgres_host,
            "port": self.postgres_port,
            "user": self.postgres_user,
            "password": self.postgres_password,
            "dbname": database or self.postgres_db,
            "connect_timeout": 5,
            "application_name": "terceirizados",
        }


def _text(env: dict, name: str, default: str) -> str:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _integer(env: dict, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = _text(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} não é um número inteiro.") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} fora do intervalo permitido ({minimum} a {maximum}).")
    return value


def _number(env: dict, name: str, default: float, minimum: float) -> float:
    raw = _text(env, name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} não é um número.") from None
    if not math.isfinite(value):  # float() takes 'nan' and 'inf', which no comparison catches
        raise ConfigError(f"{name}={raw!r} não é um número finito.")
    if value < minimum:
        raise ConfigError(f"{name}={value} deve ser maior ou igual a {minimum}.")
    return value


def _url(env: dict, name: str, default: str) -> str:
    raw = _text(env, name, default)
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name}={raw!r} não é uma URL válida (esperado http:// ou https:// seguido do host).")
    return raw


def _identifier(env: dict, name: str, default: str) -> str:
    raw = _text(env, name, default)
    if not raw.replace("_", "").isalnum() or len(raw) > 63:
        raise ConfigError(f"{name}={raw!r} inválido: use só letras, números e '_' (até 63 caracteres).")
    return raw


def _path(env: dict, name: str, default: str) -> Path:
    path = Path(_text(env, name, default)).expanduser()
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    return path


def _hosts(env: dict, name: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in _text(env, name, "").split(",") if h.strip())
    for host in hosts:
        if any(character in host for character in "/@ \t?#"):
            raise ConfigError(f"{name}: {host!r} não é um nome de host (use só o host, ex.: espelho.exemplo.org).")
    return hosts


def _percent(env: dict, name: str, default: float) -> float:
    value = _number(env, name, default, 0.0)
    if value > 100:
        raise ConfigError(f"{name}={value:g} deve estar entre 0 e 100 (é uma porcentagem).")
    return value / 100


MEGABYTE = 1024 * 1024


def load_settings(env: dict | None = None) -> Settings:
    """Read the settings from ``env`` (default: the process environment plus ``.env``)."""
    if env is None:
        load_dotenv(PROJECT_ROOT / ".env", override=False)
        env = dict(os.environ)
    return Settings(
        postgres_host=_text(env, "POSTGRES_HOST", "127.0.0.1"),
        postgres_port=_integer(env, "POSTGRES_PORT", 5432, 1, 65535),
        postgres_user=_text(env, "POSTGRES_USER", "postgres"),
        postgres_password=env.get("POSTGRES_PASSWORD", ""),
        postgres_db=_identifier(env, "POSTGRES_DB", "terceirizados"),
        portal_url=_url(env, "CGU_TERCEIRIZADOS_URL", DEFAULT_PORTAL_URL),
        data_dir=_path(env, "DATA_DIR", "adm_cgu_terceirizados_local"),
        log_dir=_path(env, "LOG_DIR", "logs"),
        http_timeout_seconds=_number(env, "HTTP_TIMEOUT_SECONDS", 60.0, 0.1),
        download_max_retries=_integer(env, "DOWNLOAD_MAX_RETRIES", 3, 0, 20),
        download_retry_delay_seconds=_number(env, "DOWNLOAD_RETRY_DELAY_SECONDS", 10.0, 0.0),
        dask_scheduler_address=_text(env, "DASK_SCHEDULER_ADDRESS", "") or None,
        parallel_workers=_integer(env, "PARALLEL_WORKERS", os.cpu_count() or 2, 1, 64),
        results_host=_text(env, "RESULTS_HOST", "127.0.0.1"),
        results_port=_integer(env, "RESULTS_PORT", 8050, 1, 65535),
        http_deadline_seconds=_number(env, "HTTP_DEADLINE_SECONDS", 900.0, 0.1),
        max_download_bytes=_integer(env, "MAX_DOWNLOAD_MB", 500, 1, 100_000) * MEGABYTE,
        max_xlsx_uncompressed_bytes=_integer(env, "MAX_XLSX_UNCOMPRESSED_MB", 1024, 1, 100_000) * MEGABYTE,
        max_quarantine_share=_percent(env, "MAX_QUARANTINE_PERCENT", 10.0),
        max_row_drop_share=_percent(env, "MAX_ROW_DROP_PERCENT", 50.0),
        max_wrong_period_share=_percent(env, "MAX_WRONG_PERIOD_PERCENT", 50.0),
        max_nulled_share=_percent(env, "MAX_NULLED_PERCENT", 10.0),
        portal_allowed_hosts=_hosts(env, "PORTAL_ALLOWED_HOSTS"),
        lock_wait_seconds=_number(env, "LOCK_WAIT_SECONDS", 1800.0, 0.1),
    )
