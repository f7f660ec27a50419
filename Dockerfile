# Imagem do pipeline para o modo servidor: registra os flows no Prefect Server (UI :8080,
# API :4200, iniciado pelo start.sh com `prefect server start`), roda um agente local que
# executa os flows agendados e serve o app de resultados (Dash) na porta 8050 pelo servidor
# WSGI waitress (requirements/results.txt; comando em run/container.sh).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PREFECT__BACKEND=server \
    PREFECT__SERVER__HOST=http://localhost \
    PREFECT__SERVER__PORT=4200 \
    RESULTS_HOST=0.0.0.0 \
    RESULTS_PORT=8050

WORKDIR /app
COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/results.txt
COPY . .

EXPOSE 8050
CMD ["bash", "run/container.sh"]
