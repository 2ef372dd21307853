# paybot in a container: `docker build -t paybot .` then
#   docker run -p 8080:8080 -v paybot-data:/data --env-file .env paybot
# The database (SQLite by default) and an optional .env live in /data, the working directory.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 PORT=8080

WORKDIR /opt/paybot
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cards ./cards
RUN pip install . && useradd --system --create-home --home-dir /data paybot

USER paybot
WORKDIR /data
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'))"
CMD ["paybot", "serve"]
