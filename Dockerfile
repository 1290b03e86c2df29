# cocm-api: slim image, non-root user; runs the migrations, then the server.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    COCM_DATABASE_URL=sqlite:////data/cocm.db
WORKDIR /srv/cocm
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install -e . && useradd --system --uid 10001 cocm && mkdir /data && chown cocm /data
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"]
# Binds 0.0.0.0, so it needs credentials: without COCM_API_KEYS or COCM_SMART_CLIENTS_FILE the
# server refuses to start (COCM_ALLOW_ANONYMOUS=true opens it on purpose, with a warning).
CMD ["sh", "-c", "cocm migrate && cocm serve --host 0.0.0.0 --port 8000"]
