"""The Prefect executor for flows that map over periods."""

from __future__ import annotations

import logging

from prefect.executors import DaskExecutor, LocalDaskExecutor

from pipelines.errors import ConfigError
from pipelines.settings import Settings

logger = logging.getLogger("pipelines.executors")


def source_fingerprint() -> str:
    """A digest of the ``pipelines`` package's source: equal on two machines when they run
    the same code."""
    import hashlib
    from pathlib import Path

    import pipelines

    digest = hashlib.sha256()
    root = Path(pipelines.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def check_cluster(settings: Settings, timeout: float = 30) -> None:
    """Fail clearly when the cluster cannot run the flow: no answer, workers without the
    project, or with another version of it. The workers need the project installed and
    nothing else: the flow sends them its settings."""
    import distributed

    def worker_fingerprint() -> str:
        """Run on each worker (sent by value, so it works where the project is missing)."""
        try:
            from pipelines.executors import source_fingerprint as remote
        except Exception as exc:  # reported below
            return f"erro: {type(exc).__name__}: {exc}"
        return remote()

    address = settings.dask_scheduler_address
    try:
        with distributed.Client(address, timeout=timeout) as client:
            if not client.scheduler_info().get("workers"):
                client.wait_for_workers(1, timeout=timeout)
            answers = client.run(worker_fingerprint)
    except (OSError, TimeoutError, distributed.TimeoutError) as exc:
        raise ConfigError(
            f"O cluster Dask em DASK_SCHEDULER_ADDRESS={address} não respondeu (ou não tem "
            f"workers) em {timeout:g} s: {exc}"
        ) from exc
    local = source_fingerprint()
    broken = {worker: answer for worker, answer in answers.items() if answer.startswith("erro")}
    if broken:
        raise ConfigError(
            f"Os workers do cluster Dask em {address} não conseguem importar o projeto (pacote pipelines): "
            + "; ".join(f"{w}: {a}" for w, a in sorted(broken.items()))
            + ". Instale o projeto e suas dependências em cada worker (veja o README, Captura histórica num "
            "cluster Dask)."
        )
    different = sorted(worker for worker, answer in answers.items() if answer != local)
    if different:
        raise ConfigError(
            f"Os workers {', '.join(different)} do cluster Dask em {address} têm outra versão do "
            "projeto: atualize-os para o mesmo código desta máquina."
        )
    logger.info("Cluster Dask em %s: %d worker(s) com o projeto na mesma versão.", address, len(answers))


def parallel_executor(settings: Settings, workers: int | None = None):
    """``DaskExecutor`` on the cluster at DASK_SCHEDULER_ADDRESS when set (checked first:
    see ``check_cluster``), otherwise a ``LocalDaskExecutor`` with processes (parsing is
    CPU-bound: threads would share one core)."""
    if settings.dask_scheduler_address:
        check_cluster(settings)
        logger.info("Executando no cluster Dask em %s.", settings.dask_scheduler_address)
        return DaskExecutor(address=settings.dask_scheduler_address)
    return LocalDaskExecutor(scheduler="processes", num_workers=workers or settings.parallel_workers)
