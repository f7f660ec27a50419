"""Brazilian number and time formats for the results app."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

PLOTLY_SEPARATORS = ",."  # decimal comma, thousands point


def brl(value) -> str:
    """R$ 1.234.567,89"""
    if value is None:
        return "—"
    text = f"{Decimal(value):,.2f}"
    return "R$ " + text.replace(",", "_").replace(".", ",").replace("_", ".")


def integer(value) -> str:
    """1.574.964"""
    if value is None:
        return "—"
    return f"{int(value):,}".replace(",", ".")


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    seconds = int((end - start) / timedelta(seconds=1))
    minutes, seconds = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def period_label(year: int, month: int) -> str:
    return f"{month:02d}/{year}"


def plural(count: int, singular: str, plural_form: str) -> str:
    """'1 execução', '2 execuções', '1.574 execuções'."""
    return f"{integer(count)} {singular if count == 1 else plural_form}"


# AG Grid's own texts (pagination, filters, overlays) in Brazilian Portuguese, and its
# number formats: "1 a 100 de 1.999".
AG_GRID_LOCALE = {
    "thousandSeparator": ".",
    "decimalSeparator": ",",
    # pagination
    "page": "Página",
    "more": "mais",
    "to": "a",
    "of": "de",
    "pageLastRowUnknown": "?",
    "firstPage": "Primeira página",
    "previousPage": "Página anterior",
    "nextPage": "Próxima página",
    "lastPage": "Última página",
    "pageSizeSelectorLabel": "Linhas por página:",
    "ariaPageSizeSelectorLabel": "Linhas por página",
    # overlays
    "loadingOoo": "Carregando...",
    "loadingError": "Erro",
    "noRowsToShow": "Nenhuma linha para mostrar",
    # filters
    "filterOoo": "Filtrar...",
    "empty": "Escolha um",
    "equals": "Igual a",
    "notEqual": "Diferente de",
    "lessThan": "Menor que",
    "greaterThan": "Maior que",
    "lessThanOrEqual": "Menor ou igual a",
    "greaterThanOrEqual": "Maior ou igual a",
    "inRange": "Entre",
    "inRangeStart": "De",
    "inRangeEnd": "Até",
    "contains": "Contém",
    "notContains": "Não contém",
    "startsWith": "Começa com",
    "endsWith": "Termina com",
    "blank": "Vazio",
    "notBlank": "Preenchido",
    "before": "Antes",
    "after": "Depois",
    "andCondition": "E",
    "orCondition": "OU",
    "dateFormatOoo": "dd/mm/aaaa",
    "applyFilter": "Aplicar",
    "resetFilter": "Limpar",
    "clearFilter": "Limpar",
    "cancelFilter": "Cancelar",
    "textFilter": "Filtro de texto",
    "numberFilter": "Filtro numérico",
    "dateFilter": "Filtro de data",
    "setFilter": "Filtro de valores",
    "blanks": "(Vazios)",
    "selectAll": "(Selecionar tudo)",
    "searchOoo": "Buscar...",
    "noMatches": "Nenhum resultado",
    "invalidDate": "Data inválida",
    "invalidNumber": "Número inválido",
    # column menu and accessibility labels
    "columns": "Colunas",
    "filters": "Filtros",
    "sortAscending": "Ordem crescente",
    "sortDescending": "Ordem decrescente",
    "sortUnSort": "Sem ordem",
    "pinColumn": "Fixar coluna",
    "pinLeft": "Fixar à esquerda",
    "pinRight": "Fixar à direita",
    "noPin": "Não fixar",
    "autosizeThiscolumn": "Ajustar esta coluna",
    "autosizeAllColumns": "Ajustar todas as colunas",
    "resetColumns": "Restaurar colunas",
    "copy": "Copiar",
    "copyWithHeaders": "Copiar com cabeçalhos",
    "ariaColumnFiltered": "Coluna filtrada",
    "ariaFilterInput": "Campo do filtro",
    "ariaFilterValue": "Valor do filtro",
    "ariaFilterFromValue": "Filtrar a partir do valor",
    "ariaFilterToValue": "Filtrar até o valor",
    "ariaFilterMenuOpen": "Abrir o menu de filtro",
    "ariaLabelColumnMenu": "Menu da coluna",
    "ariaLabelColumnFilter": "Filtro da coluna",
    "ariaLabelTooltip": "Dica",
    "ariaLabelDialog": "Diálogo",
    "ariaMenuColumn": "Pressione ALT + seta para baixo para abrir o menu da coluna",
    "ariaFilterColumn": "Pressione CTRL + ENTER para abrir o filtro",
    "ariaSortableColumn": "Pressione ENTER para ordenar",
    "ariaChecked": "marcado",
    "ariaUnchecked": "desmarcado",
    "ariaIndeterminate": "indeterminado",
}

# Plotly's tool bar in Brazilian Portuguese (dcc.Graph config "locales").
PLOTLY_LOCALE = {
    "pt-BR": {
        "dictionary": {
            "Download plot as a png": "Baixar o gráfico como PNG",
            "Download plot": "Baixar o gráfico",
            "Zoom": "Ampliar área",
            "Pan": "Mover",
            "Box Select": "Selecionar área",
            "Lasso Select": "Selecionar com laço",
            "Zoom in": "Aproximar",
            "Zoom out": "Afastar",
            "Autoscale": "Escala automática",
            "Reset axes": "Restaurar eixos",
            "Toggle Spike Lines": "Mostrar/ocultar linhas de referência",
            "Show closest data on hover": "Mostrar o dado mais próximo",
            "Compare data on hover": "Comparar dados ao passar o mouse",
            "Double-click to zoom back out": "Clique duas vezes para voltar",
            "Reset view": "Restaurar a vista",
            "Taking snapshot - this may take a few seconds": "Gerando a imagem...",
            "Snapshot succeeded": "Imagem gerada",
        },
        "format": {"decimal": ",", "thousands": "."},
    }
}
GRAPH_CONFIG = {
    "locale": "pt-BR",
    "locales": PLOTLY_LOCALE,
    "displaylogo": False,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "toggleSpikelines"],
}
