# Simple image for the enrollment gateway. Not built in CI (no Docker engine there).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY protocols ./protocols
RUN pip install --no-cache-dir . && useradd --system --home /data gateway && mkdir -p /data && chown gateway /data
USER gateway
ENV GATEWAY_DATA_DIR=/data
VOLUME /data
EXPOSE 8443 8080
CMD ["gateway", "serve", "--host", "0.0.0.0"]
