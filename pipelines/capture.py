"""Plain functions for one period's capture: discover, parse, save, load.
Prefect tasks (``pipelines.tasks``) are thin wrappers around these."""

from __future__ import annotations

import logging
import socket
from collections import Counter
from pathlib import Path
from typing import NoReturn

from pipelines import load_fields, raw_loads, storage
from pipelines.download import DownloadedFile, HttpLimits, download_file, fetch_page
from pipelines.errors import CaptureRefusedError, NewestPeriodWithdrawnError
from pipelines.parse import ParsedFile, parse_for_load
from pipelines.parse_process import parse_file_in_child
from pipelines.portal import PortalListing, PublishedFile, parse_portal_page
from pipelines.settings import Settings

logger = logging.getLogger("pipelines.capture")


def discover_published_files(settings: Settings, url: str | None = None, allow_unplaced: bool = False) -> PortalListing:
    """The page's files, newest first. A link the page does not place in a period fails
    the discovery (the newest period is then unknown) unless ``allow_unplaced``: the
    historic capture loads the others and reports them in ``.unplaced``."""
    page_url = url or settings.portal_url
    html = fetch_page(page_url, HttpLimits.from_settings(settings))
    files = parse_portal_page(html, page_url, allowed_hosts=settings.portal_allowed_hosts)
    logger.info(
        "%d links para dados brutos capturados do portal de Dados Abertos da Controladoria Geral da União "
        "(mais recente: %s, mais antigo: %s; %d link(s) não usado(s)).",
        len(files),
        files[0].label,
        files[-1].label,
        len(files.unplaced),
    )
    if not allow_unplaced:
        files.require_all_placed()
    return files


def require_newest_not_withdrawn(settings: Settings, newest: PublishedFile) -> None:
    """Fail when the page's newest period is older than the newest one already loaded: its
    file left the page (withdrawn, or the page is broken), and capturing the older period
    would not change what staging.raw reads (the newest period loaded). Nothing is changed."""
    loaded = raw_loads.newest_loaded_period(settings)
    if loaded is not None and loaded > newest.period:
        label = loaded.strftime("%Y-%m")
        raise NewestPeriodWithdrawnError(
            f"O período mais recente publicado no portal ({newest.label}) é anterior ao mais recente já "
            f"capturado ({label}): o arquivo de {label} saiu da página? Nada foi baixado nem alterado. Confira "
            "o portal; se a CGU retirou o período de vez, apague-o de raw.terceirizados, "
            "raw.terceirizados_quarentena e raw.capturas e rode de novo (e run/historic_materialize.py, para "
            "tirá-lo também das tabelas históricas)."
        )


def parse_downloaded(downloaded: DownloadedFile, child_work_dir: Path | None = None) -> ParsedFile:
    """Parse the file and log what it holds. ``child_work_dir``: parse in a child Python process
    (on another core), with its temporary files under this folder (DATA_DIR)."""
    published = downloaded.published
    if child_work_dir is None:
        parsed = parse_for_load(downloaded.content, published.format, published.file_name)
    else:
        parsed = parse_file_in_child(downloaded.content, published.format, published.file_name, child_work_dir)
    logger.info(
        "Arquivo %s (%s, codificação %s): %d linhas de dados, %d carregáveis (%d reparadas), %d em quarentena.",
        published.file_name,
        published.label,
        parsed.encoding,
        parsed.data_rows,
        parsed.loaded_rows,
        parsed.repaired_rows,
        len(parsed.quarantine),
    )
    for note in parsed.notes:
        logger.warning("Arquivo %s: %s.", published.file_name, note)
    for line in parsed.quarantine[:20]:
        logger.warning("Quarentena %s linha %d: %s", published.file_name, line.line_number, line.reason)
    return parsed


def load_parsed(
    settings: Settings, csv_file: Path, parsed: ParsedFile, downloaded: DownloadedFile, run_id: str | None
) -> dict:
    """Load one period atomically and return its reconciliation summary. The download's local
    files (pending, ``pipelines.storage``) replace the period's at the end of the load's
    transaction, under the period's lock (so two captures of a period publish in the order they
    commit; a crash before the commit leaves the database behind the files, and the next
    capture loads the file again); a refused or failed load removes them, and the period's
    files stay those of the last load."""
    return discarding_on_failure(
        settings, downloaded, lambda: _load_parsed(settings, csv_file, parsed, downloaded, run_id)
    )


def _publish_local_files(settings: Settings, downloaded: DownloadedFile) -> None:
    for path in storage.publish(settings.data_dir, downloaded):
        logger.info("Arquivo local do período %s atualizado: %s.", downloaded.published.label, path)


def _load_parsed(
    settings: Settings, csv_file: Path, parsed: ParsedFile, downloaded: DownloadedFile, run_id: str | None
) -> dict:
    published = downloaded.published
    record = raw_loads.CaptureRecord(
        period=published.period,
        file_name=published.file_name,
        url=published.url,
        file_format=published.format,
        encoding=parsed.encoding,
        sha256=downloaded.sha256,
        etag=downloaded.etag,
        last_modified=downloaded.last_modified,
        size_bytes=len(downloaded.content),
        data_rows=parsed.data_rows,
        loaded_rows=parsed.loaded_rows,
        repaired_rows=parsed.repaired_rows,
        quarantined_rows=len(parsed.quarantine),
        notes="; ".join(parsed.notes) or None,
        captured_at=downloaded.downloaded_at,
        run_id=run_id,
        files_host=socket.gethostname(),
    )
    if record.loaded_rows + record.quarantined_rows != record.data_rows:  # guarded by the parser too
        raise RuntimeError(f"Reconciliação falhou para {published.label}: {record}")
    refusal = implausibility(parsed, published.file_name, settings.max_quarantine_share)
    if not refusal:
        previous = raw_loads.last_capture(settings, published.period)
        refusal = row_drop(
            parsed.loaded_rows, previous and previous["loaded_rows"], settings.max_row_drop_share, published.file_name
        )
    if refusal:
        refuse(settings, record, published.label, refusal)
    try:
        # the load fields are checked on the rows copied, in the load's transaction (after the
        # identical-file check, whose message names the other period)
        raw_loads.load_period(
            settings,
            csv_file,
            parsed.quarantine,
            record,
            refuse_if=lambda written: wrong_period(written, published, settings.max_wrong_period_share),
            before_commit=lambda: _publish_local_files(settings, downloaded),
        )
    except raw_loads.FileOfAnotherPeriodError as exc:
        refuse(settings, record, published.label, identical_file(published, record.sha256, exc.periods))
    except raw_loads.LoadRefusedError as exc:
        refuse(settings, record, published.label, str(exc))
    return {
        "periodo": published.label,
        "linhas_arquivo": record.data_rows,
        "linhas_carregadas": record.loaded_rows,
        "linhas_reparadas": record.repaired_rows,
        "linhas_quarentena": record.quarantined_rows,
    }


def refuse(settings: Settings, record: raw_loads.CaptureRecord, label: str, reason: str) -> NoReturn:
    """Record a refused attempt in raw.capturas and fail the period; its data stays."""
    raw_loads.record_refused_capture(settings, record, reason)
    raise CaptureRefusedError(
        f"Período {label} recusado: {reason}. Os dados anteriores do período foram mantidos "
        "(a tentativa está em raw.capturas, colunas tentativa_*)."
    )


def identical_file(published: PublishedFile, sha256: str, periods: list[str]) -> str:
    """The refusal of a file identical (same sha256) to the capture of other ``periods``."""
    others = " e ".join(periods)
    return (
        f"o arquivo {published.file_name} é idêntico ao já carregado para {others} (sha256 "
        f"{sha256[:12]}…): o link de {published.label} ou o de {others} aponta para o arquivo errado. "
        f"Confira a página; se o errado for o de {others}, apague esse período de raw.terceirizados, "
        "raw.terceirizados_quarentena e raw.capturas e capture de novo"
    )


def percent_above(percent: float, limit: float) -> str:
    """``percent`` in Portuguese, with as many decimals as it takes to read above ``limit``
    (10,001 rows of 20,000 are 50,005%: "50,0%" would read as the limit itself)."""
    decimals = 1
    while round(percent, decimals) <= limit and decimals < 6:
        decimals += 1
    return f"{percent:.{decimals}f}".replace(".", ",")


def implausibility(parsed: ParsedFile, file_name: str, max_quarantine_share: float) -> str | None:
    """Why a parsed file must not replace a period's rows, or None when it may.

    A file without data rows, one from which no row loads (a changed separator puts every
    line in quarantine), or one with more quarantined lines than MAX_QUARANTINE_PERCENT
    allows is a broken publication, not a period with no outsourced workers."""
    quarantined = len(parsed.quarantine)
    if parsed.data_rows == 0:
        return f"o arquivo {file_name} não tem linhas de dados (vazio ou só o cabeçalho)"
    if parsed.loaded_rows == 0:
        example = parsed.quarantine[0].reason if parsed.quarantine else ""
        return (
            f"nenhuma das {parsed.data_rows} linhas de {file_name} pôde ser carregada, todas ficaram em "
            f"quarentena (o separador ou o formato do arquivo mudou? primeira: {example})"
        )
    share = quarantined / parsed.data_rows
    if share > max_quarantine_share:
        return (
            f"{quarantined} de {parsed.data_rows} linhas ({share * 100:.1f}%".replace(".", ",")
            + f") de {file_name} ficaram em quarentena, acima do limite "
            f"MAX_QUARANTINE_PERCENT={max_quarantine_share * 100:g}"
        )
    return None


def wrong_period(written: Counter, published: PublishedFile, max_share: float) -> str | None:
    """Why a file must not be loaded as the period of its link, or None when it may: more than
    ``max_share`` of its rows say, in their load fields, that they are another period's
    (``load_fields``): the link points to another period's file, or to a re-exported copy of it,
    whose sha256 differs from that period's capture. ``written``: how many rows carry each
    (Num_Mes_Carga, Mes_Carga, Ano_Carga)."""
    loaded = sum(written.values())
    if not loaded:
        return None
    others, named = load_fields.rows_naming_other_periods(written, published.period)
    share = others / loaded
    if others == 0 or share * 100 <= max_share * 100 + 1e-9:  # as row_drop: the limit's float may be a hair under
        return None
    percent = percent_above(share * 100, max_share * 100)
    said = f" (o mais frequente: {named})" if named else ""
    return (
        f"{others} de {loaded} linhas ({percent}%) de {published.file_name} dizem nos campos de carga "
        f"(Num_Mes_Carga, Mes_Carga, Ano_Carga) ser de outro período que {published.label}{said}, acima do limite "
        f"MAX_WRONG_PERIOD_PERCENT={max_share * 100:g}: o link de {published.label} aponta para o arquivo de outro "
        "período? Confira a página; se o arquivo estiver certo e só esses campos errados, "
        "MAX_WRONG_PERIOD_PERCENT=100 o aceita de propósito"
    )


def row_drop(loaded: int, previous: int | None, max_drop_share: float, file_name: str) -> str | None:
    """Why a file with ``loaded`` loadable rows must not replace a period whose previous
    capture loaded ``previous`` rows (None: never loaded), or None when it may: it lost more
    than ``max_drop_share`` of them (a body cut at a line break by a connection that ended
    early, an incomplete file republished)."""
    if not previous:
        return None
    drop = (previous - loaded) * 100 / previous  # percent; the limit's float (0.29 * 100) may be a hair under
    if drop <= max_drop_share * 100 + 1e-9:
        return None
    percent = percent_above(drop, max_drop_share * 100)
    return (
        f"{file_name} tem {loaded} linhas carregáveis, {percent}% menos que as {previous} da captura anterior do "
        f"período, acima do limite MAX_ROW_DROP_PERCENT={max_drop_share * 100:g} (arquivo truncado ou incompleto? "
        "MAX_ROW_DROP_PERCENT=100 o aceita de propósito)"
    )


def save_outputs(settings: Settings, downloaded: DownloadedFile, parsed: ParsedFile) -> Path:
    """The CSV to load (pending until the load commits: ``load_parsed``)."""
    path = storage.save_csv(settings.data_dir, parsed, downloaded)
    logger.info("Dados tratados em CSV salvos localmente em %s (até a carga terminar).", path)
    return path


def discarding_on_failure(settings: Settings, downloaded: DownloadedFile, step):
    """``step()``; when it fails, the download's pending local files go (the period's stay)."""
    try:
        return step()
    except BaseException:
        storage.discard(settings.data_dir, downloaded)
        raise


def capture_period(settings: Settings, published: PublishedFile, force: bool, run_id: str | None) -> dict:
    """Download, parse, save and load one period; skip it when the file did not change.

    Only a small summary leaves this function: the bytes and the DataFrame of the period
    are released when it returns, so memory does not grow with the number of periods.
    """
    previous = None if force else raw_loads.last_capture(settings, published.period)
    # conditional request only for the same file: a renamed file must be downloaded
    same_file = previous is not None and previous["url"] == published.url
    downloaded = download_file(
        published,
        HttpLimits.from_settings(settings),
        etag=previous["etag"] if same_file else None,
        last_modified=previous["last_modified"] if same_file else None,
    )
    if downloaded is None or (previous and downloaded.sha256 == previous["sha256"]):
        if previous["attempt"] == "recusada":
            raw_loads.record_unchanged_attempt(settings, published.period, run_id)
            logger.info(
                "Período %s: o arquivo voltou a ser o da última carga; a tentativa recusada deixa de ser a última.",
                published.label,
            )
        logger.info(
            "Período %s ignorado: arquivo inalterado desde a última captura (use --forcar para recarregar).",
            published.label,
        )
        return {"periodo": published.label, "situacao": "inalterado"}
    storage.save_raw_file(settings.data_dir, downloaded)

    def parse_and_save() -> tuple[ParsedFile, Path]:
        parsed = parse_downloaded(downloaded)
        return parsed, save_outputs(settings, downloaded, parsed)

    parsed, csv_file = discarding_on_failure(settings, downloaded, parse_and_save)
    summary = load_parsed(settings, csv_file, parsed, downloaded, run_id)
    return {**summary, "situacao": "carregado"}


def summarize_periods(files: list[PublishedFile], results: list) -> tuple[list[dict], list[str]]:
    """Pair each period with its outcome; failed periods come back as exceptions."""
    done, failed = [], []
    for published, result in zip(files, results):
        if isinstance(result, BaseException) or not isinstance(result, dict):
            failed.append(f"{published.label} ({published.file_name}): {result}")
        else:
            done.append(result)
    loaded = [r for r in done if r["situacao"] == "carregado"]
    logger.info(
        "Captura histórica: %d período(s) carregado(s), %d inalterado(s), %d com falha; %d linhas carregadas, "
        "%d reparadas, %d em quarentena.",
        len(loaded),
        len(done) - len(loaded),
        len(failed),
        sum(r["linhas_carregadas"] for r in loaded),
        sum(r["linhas_reparadas"] for r in loaded),
        sum(r["linhas_quarentena"] for r in loaded),
    )
    for result in loaded:
        logger.info(
            "  %s: %d linhas no arquivo = %d carregadas (%d reparadas) + %d em quarentena.",
            result["periodo"],
            result["linhas_arquivo"],
            result["linhas_carregadas"],
            result["linhas_reparadas"],
            result["linhas_quarentena"],
        )
    return done, failed
