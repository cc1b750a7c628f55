# kontext-bot: slim Python, a numeric non-root user, SQLite on a volume (or KONTEXT_DB=postgresql://...:
# asyncpg is pinned too), pinned dependencies.
#   docker build -t kontext-bot .
#   docker run -e DISCORD_TOKEN=... -v kontext-data:/data -p 8080:8080 kontext-bot
# /metrics and /healthz on KONTEXT_HTTP (0.0.0.0:8080 here); HEALTHCHECK asks /healthz.
# .dockerignore is an allow-list: no tests, benches, .git or local databases reach the image.
FROM python:3.11-slim

# MALLOC_MMAP_THRESHOLD_: glibc keeps freed multi-MB image buffers in the heap unless it is fixed.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KONTEXT_DB=/data/kontext.db \
    KONTEXT_HTTP=0.0.0.0:8080 \
    MALLOC_MMAP_THRESHOLD_=131072

# A numeric UID and GID, so an orchestrator can check "runAsNonRoot" without reading /etc/passwd.
RUN groupadd --gid 10001 kontext \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin kontext \
 && mkdir -p /data && chown 10001:10001 /data

WORKDIR /app
# Dependencies first, exactly as pinned (constraints.txt), in their own cached layer.
COPY constraints.txt ./
RUN pip install -r constraints.txt
# Then the code, with nothing more resolved: a dependency missing from constraints.txt fails the
# build at `pip check` instead of being installed at whatever version is newest that day.
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY cogs ./cogs
COPY storage ./storage
RUN pip install --no-deps . && pip check

USER 10001:10001
# Relative paths (generate's default ./out) land on the volume, which this user owns.
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# Healthy while /healthz answers 200 (gateway connected, database reachable); a 503, a refused
# connection or no answer in time is a failed check. It asks the port KONTEXT_HTTP names, so
# changing KONTEXT_HTTP at `docker run` moves the check with it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('KONTEXT_HTTP', '').rpartition(':')[2] or '8080'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
CMD ["kontext-bot", "run"]
