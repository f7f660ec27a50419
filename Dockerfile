# Imagem dos flows (modo local dentro do contêiner). O servidor Prefect e o app Dash
# são acrescentados pelo start.sh quando houver um Docker engine.
FROM python:3.11-slim
WORKDIR /app
COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/results.txt
COPY . .
ENV POSTGRES_HOST=host.docker.internal
CMD ["python", "run/capture.py"]
