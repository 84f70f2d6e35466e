# One image for the collector and the loader of the scaled deployment.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY collector collector
COPY loader loader
COPY warehouse warehouse
COPY funnelhouse funnelhouse
COPY schemas schemas
COPY sql sql
# Editable install keeps schemas/ and sql/ beside the code, where settings look for them.
RUN pip install --no-cache-dir -e . && useradd --system --home /data funnelhouse \
    && mkdir -p /data && chown funnelhouse /data
USER funnelhouse
ENV FUNNELHOUSE_DATA_DIR=/data FUNNELHOUSE_HOST=0.0.0.0
EXPOSE 8080 9464
CMD ["funnelhouse", "collector"]
