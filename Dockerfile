# s3drain in a container. Build: docker build -t s3drain .
# Run:  docker run --rm --env-file config/.env -v "$PWD/in:/data/in:ro" s3drain \
#           ingest /data/in --layer Raw --origin Local --spec Movies
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# .dockerignore lets in only the package, so config/.env never lands in an image layer.
COPY . /src
RUN pip install /src && rm -rf /src

# A fixed numeric uid: files drained into a mounted folder are not root's, and orchestrators
# that insist on a non-root user can check it without reading /etc/passwd.
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin s3drain \
    && mkdir /data \
    && chown 10001:10001 /data
USER 10001:10001
WORKDIR /data

ENTRYPOINT ["s3drain"]
CMD ["--help"]
