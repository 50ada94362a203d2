# impex-hub's image: the web server (gunicorn), the clusters and the one-shot set-up of compose.yaml all run it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The pinned requirements first: a change of the code alone reuses this layer.
COPY requirements.txt .
RUN pip install -r requirements.txt

# Everything the hub writes goes under /data (IMPEX_VAR_DIR: inboxes, media, cache) and /static (STATIC_ROOT), owned
# by a user without privileges; the code stays root's, read-only to the hub. A new named volume takes the owner of
# the folder it is mounted on.
RUN useradd --create-home --uid 10001 hub \
    && mkdir -p /data /static \
    && chown hub:hub /data /static
COPY . .

ENV IMPEX_VAR_DIR=/data \
    STATIC_ROOT=/static \
    PORT=8000
USER hub
EXPOSE 8000

CMD ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi"]
