# facestream image: the core, the dataflow and the gRPC server share it.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    DEEPFACE_HOME=/weights
WORKDIR /app
COPY requirements/production.lock requirements/production.lock
# The whole tree pinned with hashes first (a layer that changes only with the lock), then
# facestream itself without resolving anything again. No demo or development extras: no
# embedded broker, scikit-image or protoc in the image.
RUN pip install --no-cache-dir --require-hashes -r requirements/production.lock
COPY pyproject.toml README.md ./
COPY proto proto
COPY facestream facestream
COPY di di
COPY dataflow dataflow
COPY grpc_server grpc_server
COPY apps apps
RUN pip install --no-cache-dir --no-deps . \
 && useradd --create-home facestream \
 && mkdir -p /weights/.deepface/weights /recovery \
 && chown -R facestream /weights /recovery
# Named volumes mounted on these folders start with the folder's owner: not root.
USER facestream
# 50051: gRPC AnalyzeService; 2101: Bytewax cluster traffic between dataflow processes;
# 9464/9465: facestream's /metrics (server, dataflow); 3030: Bytewax's API server.
EXPOSE 50051 2101 9464 9465 3030
ENTRYPOINT ["facestream"]
CMD ["--help"]
