# stash2plex workers, scheduler and CLI. Runs as the unprivileged user `stash2plex`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin stash2plex \
    && mkdir -p /data /definitions \
    && chown stash2plex:stash2plex /data /definitions

# Dependency layer: rebuilt only when pyproject.toml changes, not on every code change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code (the emulators too: `stash2plex demo` runs against them).
COPY README.md LICENSE ./
COPY pipeline ./pipeline
COPY actors ./actors
COPY plugin ./plugin
COPY ops ./ops
COPY tests/__init__.py ./tests/__init__.py
COPY tests/emulators ./tests/emulators
RUN pip install --no-deps -e .

USER stash2plex
ENV STASH2PLEX_DATA_DIR=/data dramatiq_prom_db=/tmp/dramatiq-prometheus STASH2PLEX_METRICS_HOST=0.0.0.0
VOLUME /data
EXPOSE 9191 8787
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "ops.healthcheck", "worker"]
CMD ["dramatiq", "actors", "--processes", "2", "--threads", "4"]
