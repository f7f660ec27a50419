// Functions the grids' column definitions call by name (dash-ag-grid "function" strings).
var dagfuncs = (window.dashAgGridFunctions = window.dashAgGridFunctions || {});

// Brazilian number format: 1.234.567 and 1.234,50 (grouping=false for years: 2024).
dagfuncs.numeroBR = function (value, decimals, grouping) {
    if (value === null || value === undefined || value === "") {
        return "";
    }
    var number = Number(value);
    if (!isFinite(number)) {
        return String(value);
    }
    return new Intl.NumberFormat("pt-BR", {
        minimumFractionDigits: decimals,
        maximumFractionDigits: decimals,
        useGrouping: grouping,
    }).format(number);
};
