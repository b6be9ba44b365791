FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY pipeline ./pipeline
COPY actors ./actors
COPY plugin ./plugin
COPY ops ./ops
COPY tests/emulators ./tests/emulators
COPY tests/__init__.py ./tests/__init__.py
RUN pip install --no-cache-dir -e .
ENV STASH2PLEX_DATA_DIR=/data dramatiq_prom_db=/tmp/dramatiq-prometheus
VOLUME /data
CMD ["dramatiq", "actors", "--processes", "2", "--threads", "4"]
