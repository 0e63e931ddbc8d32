# facestream image: the core, the dataflow and the gRPC server share it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proto proto
COPY facestream facestream
COPY di di
COPY dataflow dataflow
COPY grpc_server grpc_server
RUN pip install --no-cache-dir .
# DeepFace weights live in a volume mounted here (see docker-compose.yml).
ENV DEEPFACE_HOME=/weights
ENTRYPOINT ["facestream"]
