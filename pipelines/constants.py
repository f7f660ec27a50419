"""Names shared by every flow: schemas, tables, source columns and month names.

One source of truth for Python code; the dbt project keeps its own names in
``queries/models/sources.yml`` and the macros.
"""

import unicodedata

PROJECT_NAME = "adm_cgu_terceirizados"

# Prefect flow names (also used as log file names and in the runs table).
CAPTURE_FLOW = f"{PROJECT_NAME}__capture"
MATERIALIZE_FLOW = f"{PROJECT_NAME}__materialize"
HISTORIC_CAPTURE_FLOW = f"{PROJECT_NAME}__historic_capture"
HISTORIC_MATERIALIZE_FLOW = f"{PROJECT_NAME}__historic_materialize"
# The scheduled pipeline: capture then materialize the newest period, run daily and
# skipped when nothing is due (the only flow registered with a schedule).
PIPELINE_FLOW = f"{PROJECT_NAME}__pipeline"
# The scheduled pipeline's attempts (a cycle's captures + materializations) in the runs
# table; also the name of the local scheduler's own log.
SCHEDULER_FLOW = f"{PROJECT_NAME}__agendador"
SCHEDULER_LOGGER = "pipelines.agendador"
# Context key with the time a local run of the scheduled pipeline stands for (the local
# scheduler's tick); Prefect Server gives it as ``scheduled_start_time``.
SCHEDULED_TIME_KEY = "pipeline_scheduled_time"
# Serialises the scheduled pipeline's decision and its attempt record (arbitrary constant key).
SCHEDULER_LOCK_KEY = 7_315_020_250  # distinct from the keys in pipelines.database

# Database objects (schema, table). Never built from outside text.
RAW_SCHEMA = "raw"
RAW_TABLE = "terceirizados"
QUARANTINE_TABLE = "terceirizados_quarentena"
CAPTURES_TABLE = "capturas"
LOGS_SCHEMA = "logs"
LOG_RECORDS_TABLE = "registros"
RUNS_TABLE = "execucoes"
STAGING_SCHEMA = "staging"
# dbt models (queries/models/staging), in build order.
LATEST_MODELS = ("raw", "cleaned", "renamed", "transformed")
HISTORIC_MODELS = ("historic_raw", "historic_cleaned", "historic_renamed", "historic_transformed")
# The two families of dbt builds, each with its own target folder (DATA_DIR/dbt_target/<family>),
# so a latest and a historic materialization can run at the same time: the latest models,
# and the historic models with the marts built from them.
DBT_LATEST = "latest"
DBT_HISTORIC = "historic"
# Tests that a model's verify_before_commit post-hook also runs, with the same arguments on the
# same rows, inside the model's transaction (queries/macros/verify_before_commit.sql), and the
# unique and not-null tests of its primary key's columns (the key, created or kept in the same
# transaction, verified them): the flows' builds leave them out instead of reading the table
# again after the commit; a manual dbt test or build runs them.
VERIFIED_BEFORE_COMMIT_TAG = "verificado_antes_do_commit"
# Analysis tables (queries/models/marts, schema marts) built from historic_transformed by the
# historic materialization after the historic models: one dbt build of the folder (dbt orders
# them; one invocation instead of six keeps a run with nothing new short).
MARTS_SCHEMA = "marts"
HISTORIC_MARTS = (
    "totais_por_periodo",
    "contratos_por_periodo",
    "orgaos_por_periodo",
    "empresas_por_periodo",
    "escolaridade_por_periodo",
    "contratos",
    "variacao_entre_periodos",
)
HISTORIC_MARTS_SELECTOR = "path:models/marts"

# The 23 columns of every CGU file, in the order the portal publishes them,
# lower-cased. Header-less files (2019-01) are read in this order.
SOURCE_COLUMNS = (
    "id_terc",
    "sg_orgao_sup_tabela_ug",
    "cd_ug_gestora",
    "nm_ug_tabela_ug",
    "sg_ug_gestora",
    "nr_contrato",
    "nr_cnpj",
    "nm_razao_social",
    "nr_cpf",
    "nm_terceirizado",
    "nm_categoria_profissional",
    "nm_escolaridade",
    "nr_jornada",
    "nm_unidade_prestacao",
    "vl_mensal_salario",
    "vl_mensal_custo",
    "num_mes_carga",
    "mes_carga",
    "ano_carga",
    "sg_orgao",
    "nm_orgao",
    "cd_orgao_siafi",
    "cd_orgao_siape",
)

# Metadata columns added by the capture, in table order after the source columns.
METADATA_COLUMNS = (
    "periodo",
    "arquivo_origem",
    "url_origem",
    "sha256_arquivo",
    "linha_origem",
    "observacao_reparo",
    "capturado_em",
)

RAW_COLUMNS = SOURCE_COLUMNS + METADATA_COLUMNS
# Separator of the local CSVs (as in the CGU's files): decimal commas need no quoting.
CSV_DELIMITER = ";"

# Month names as written on the portal (accents and case are normalised before lookup).
MONTHS = {
    "janeiro": 1,
    "fevereiro": 2,
    "marco": 3,
    "abril": 4,
    "maio": 5,
    "junho": 6,
    "julho": 7,
    "agosto": 8,
    "setembro": 9,
    "outubro": 10,
    "novembro": 11,
    "dezembro": 12,
}
MONTH_NAMES = {number: name.upper() for name, number in MONTHS.items()}


def normalise_text(text: str) -> str:
    """Lower case without accents ("Março " -> "marco"), to compare names from the source."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip().lower()


DATA_FORMATS = ("csv", "xlsx")

# Structured events in logs.registros (column ``evento``): what readers count, instead of
# parsing the wording of a message.
EVENT_RETRY = "nova_tentativa"  # a task failed transiently and a retry was scheduled
EVENT_DBT_WARNING = "aviso_dbt"  # a dbt test ended with a warning
