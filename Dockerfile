# The chapter 07 recommendation service in a container (the seeds' "deployment" step).
#
# Not built in CI (no Docker engine there). Build and run it on a machine with Docker:
#
#   1. make a serving bundle, e.g. by running notebooks/07_inference_and_serving.ipynb
#      (it writes build/ch07/bundle), or in Python:
#          from course_lib.serve import save_bundle
#          save_bundle("build/ch07/bundle", model, catalogue, max_len=50, user_ids=..., histories=...)
#   2. docker build -t course-recsys --build-arg BUNDLE=build/ch07/bundle .
#   3. docker run --rm -p 127.0.0.1:8000:8000 --cpus 2 course-recsys
#   4. curl -s localhost:8000/health
#      curl -s localhost:8000/recommend -H 'content-type: application/json' -d '{"user_id": 1, "k": 5}'
#
# Inside the container the service must listen on 0.0.0.0 to be reachable through the
# published port; `-p 127.0.0.1:8000:8000` still exposes it to this machine only.
# Options (micro-batching, int8, ONNX backend, cache) go after the image name, e.g.
#   docker run --rm -p 127.0.0.1:8000:8000 course-recsys --backend onnx --cache-size 10000
# The image holds only what serving needs: no Jupyter, no training libraries, no datasets
# (MovieLens may not be redistributed; the bundle holds ids, titles and histories only).

FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The same pins as pyproject.toml, limited to what `python -m course_lib.serve` imports.
# torch comes from PyTorch's CPU-only index (a much smaller wheel than the CUDA one).
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu \
        torch==2.13.0 numpy==2.4.6 pandas==3.1.1 scipy==1.17.1 safetensors==0.8.0 \
        fastapi==0.165.0 uvicorn==0.54.0 httptools==0.9.0 pydantic==2.14.4 onnxruntime==1.32.0 httpx==0.28.1

WORKDIR /srv
COPY pyproject.toml README.md ./
COPY course_lib ./course_lib
RUN pip install --no-deps .

ARG BUNDLE=build/ch07/bundle
COPY ${BUNDLE} /srv/bundle

RUN useradd --create-home --uid 10001 recsys
USER recsys

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"

ENTRYPOINT ["python", "-m", "course_lib.serve", "--checkpoint", "/srv/bundle", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--threads", "2"]
