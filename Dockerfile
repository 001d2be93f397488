# ordersync — one image for every role (poller, worker, migrate, tools).
# Build stage: install pinned dependencies into a virtualenv.
FROM python:3.11-slim AS build
# Marks this stage's (dangling) image, so tooling can clean up what a build left behind.
LABEL org.ordersync.stage=build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml constraints.txt README.md ./
COPY sync ./sync
COPY workers ./workers
COPY config ./config
RUN /opt/venv/bin/pip install -c constraints.txt .

# Runtime stage: slim, non-root, no build tools, no secrets.
FROM python:3.11-slim
ENV PATH="/opt/venv/bin:$PATH" PYTHONUNBUFFERED=1 ORDERSYNC_LOG_FORMAT=json \
    DATABASE_URL=sqlite:////data/ordersync.db
RUN useradd --system --uid 10001 --home-dir /data --create-home ordersync
COPY --from=build /opt/venv /opt/venv
USER ordersync
WORKDIR /data
EXPOSE 8080 9108
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["ordersync", "health"]
ENTRYPOINT ["ordersync"]
CMD ["run"]
