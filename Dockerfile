# kontext-bot: slim Python, non-root, SQLite on a volume.
FROM python:3.11-slim

# MALLOC_MMAP_THRESHOLD_: glibc keeps freed multi-MB image buffers in the heap unless it is fixed.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    KONTEXT_DB=/data/kontext.db \
    MALLOC_MMAP_THRESHOLD_=131072

RUN useradd --create-home --uid 10001 kontext \
 && mkdir -p /data && chown kontext:kontext /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY storage ./storage
COPY tests ./tests
RUN pip install .

USER kontext
VOLUME ["/data"]
CMD ["kontext-bot", "run"]
