# One image for every ImageBatch process: imagebatch-worker (the default), imagebatch-api,
# imagebatch-operator and the dev sample server (python -m imagebatch.devservers.samples).
#
#   docker build -t imagebatch:dev .
#
# Layers are ordered so that a code change rebuilds only the source layers: the dependency list is
# read from pyproject.toml and installed before any source is copied. The project itself is installed
# editable, so Tilt's live_update can sync changed .py files into /app and (after a restart of the
# process) run them without rebuilding the image.
FROM python:3.11-slim

# PYTHONSAFEPATH: /app holds the card's `operator/` folder, which would shadow the standard library's
# `operator` module for `python -m …`/`python -c …` run from there (they put the working directory
# first on sys.path). The services import it as `imagebatch.operator` through the editable install.
ENV PYTHONSAFEPATH=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The dev-only restart wrapper Tilt puts in front of the services (see the script's header).
COPY deploy/docker/rerun.sh /usr/local/bin/imagebatch-rerun

# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER, and the
# manifests' fsGroup matches it so mounted volumes are writable. /app and the venv belong to that
# user so live_update's file sync and `pip install -e .` work inside the running container.
RUN chmod 0755 /usr/local/bin/imagebatch-rerun \
    && groupadd --system --gid 10001 imagebatch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin imagebatch \
    && mkdir -p /app /data/uploads /opt/venv \
    && chown -R 10001:10001 /app /data /opt/venv

USER 10001:10001
WORKDIR /app
RUN python -m venv /opt/venv

# Dependencies first: this layer is rebuilt only when pyproject.toml changes. The build backend
# (setuptools) is installed here too, so the editable install below and live_update's
# `pip install --no-deps --no-build-isolation -e .` need no network.
COPY --chown=10001:10001 pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); print(*p['build-system']['requires'], *p['project']['dependencies'], sep=chr(10))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the source (pyproject names README.md as the long description, so the build needs it).
COPY --chown=10001:10001 README.md ./
COPY --chown=10001:10001 imagebatch/ imagebatch/
COPY --chown=10001:10001 operator/ operator/
COPY --chown=10001:10001 worker/ worker/
COPY --chown=10001:10001 api/ api/
RUN pip install --no-deps --no-build-isolation -e .

# Thumbnails, and the api's uploaded originals under /data/uploads. Declared after the chown
# above, so a fresh named volume starts out owned by the service user.
VOLUME ["/data"]

# 8000: imagebatch-api; 9100: the worker's /healthz, /readyz and /metrics.
EXPOSE 8000 9100

CMD ["imagebatch-worker"]
