# syntax=docker/dockerfile:1
# One image for every role of the scaled deployment: migrate, collector, loader, serve.
# The package is installed from a wheel (not editable): the tracking plan, the SQL and
# the web console are package data under funnelhouse/, so no source tree is needed.

# 1. The web console (Preact + ECharts, type-checked and bundled by esbuild). The build
#    writes ../funnelhouse/console_dist beside console/, where the package data lives.
FROM node:22-bookworm-slim AS console
WORKDIR /src
COPY console/package.json console/package-lock.json console/
RUN npm --prefix console ci --no-audit --no-fund
COPY console/tsconfig.json console/
COPY console/scripts console/scripts
COPY console/src console/src
RUN mkdir -p funnelhouse && npm --prefix console run build

# 2. The wheel, with the built console inside it.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY funnelhouse funnelhouse
COPY --from=console /src/funnelhouse/console_dist funnelhouse/console_dist
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# 3. The runtime: the wheel and its dependencies, no sources, no node.
FROM python:3.11-slim
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --home /data funnelhouse && mkdir -p /data && chown funnelhouse /data
USER funnelhouse
WORKDIR /data
ENV FUNNELHOUSE_DATA_DIR=/data FUNNELHOUSE_HOST=0.0.0.0
# 8080 collector, 8081 serve, 9464 a loader's /metrics.
EXPOSE 8080 8081 9464
CMD ["funnelhouse", "collector"]
