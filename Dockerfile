# Simple image for the enrollment gateway. Not built in CI (no Docker engine there).
# The listeners bind every address in the container; certificates, CRL/OCSP URLs and the
# banner use GATEWAY_PUBLIC_HOST (the name clients reach), which 0.0.0.0 cannot be:
#   docker run -e GATEWAY_PUBLIC_HOST=gw.example.com -p 8443:8443 -p 8080:8080 gateway
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY protocols ./protocols
RUN pip install --no-cache-dir . && useradd --system --home /data gateway && mkdir -p /data && chown gateway /data
USER gateway
ENV GATEWAY_DATA_DIR=/data GATEWAY_PUBLIC_HOST=localhost
VOLUME /data
EXPOSE 8443 8080
# the first run initializes /data with this public host (stored in /data/config.toml)
CMD ["sh", "-c", "exec gateway serve --host 0.0.0.0 --public-host \"$GATEWAY_PUBLIC_HOST\""]
