"""gunicorn's settings for impex-hub: `gunicorn -c config/gunicorn.py config.wsgi` (make serve, compose.yaml).

Every value comes from the environment, with a default for a machine of this size; README "Production" lists them.
"""

import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def _bind() -> str:
    """ADDR as `make run` reads it ([host:]port, a bare port on 127.0.0.1), else 0.0.0.0:PORT as container
    platforms set it, else 127.0.0.1:8000."""
    addr = os.environ.get("ADDR", "").strip()
    if addr:
        return addr if ":" in addr else f"127.0.0.1:{addr}"
    port = os.environ.get("PORT", "").strip()
    return f"0.0.0.0:{port}" if port else "127.0.0.1:8000"


bind = _bind()

# Threads in a few processes: a request mostly waits on PostgreSQL, so threads overlap those waits cheaply, and
# processes use the cores (the GIL). Each thread holds a database connection (DB_CONN_MAX_AGE): workers x threads,
# plus the clusters' workers, must stay under PostgreSQL's max_connections (100 by default).
worker_class = "gthread"
workers = _int("GUNICORN_WORKERS", _int("WEB_CONCURRENCY", min(2 * (os.cpu_count() or 1), 8)))
threads = _int("GUNICORN_THREADS", 4)

# A gthread worker tells the arbiter it is alive from its main loop, not per request: this restarts a worker whose
# loop is stuck, while a long upload (up to IMPEX_MAX_UPLOAD_BYTES) or a slow page goes on in its thread.
timeout = _int("GUNICORN_TIMEOUT", 60)
# On SIGTERM (make serve's Ctrl-C, `docker compose stop`) requests under way get this long to finish.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Idle keep-alive connections from a proxy in front are kept this long.
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# A worker is replaced after this many requests (0: never), each at a different count (jitter), so that memory a
# library keeps growing is given back and the workers are never all restarting at once.
max_requests = _int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 200)

# Which addresses may say, by X-Forwarded-Proto (and -For), that a request came over HTTPS: only the proxy in front
# (gunicorn reads FORWARDED_ALLOW_IPS itself; default loopback). Django decides HTTPS by SECURE_PROXY_SSL_HEADER
# when it is set, and by what gunicorn accepted otherwise; login throttling reads the client's address by
# IMPEX_PROXY_COUNT (README "Production").
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Errors to stderr; one line per request to stdout only when asked (GUNICORN_ACCESS_LOG=-, or a file): at hundreds
# of API requests a second the access log would be most of the output.
errorlog = "-"
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# The heartbeat files in memory: a container's disk may be slow, and a blocked write would look like a hung worker.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# gunicorn 27's control socket (a file in ~/.gunicorn) is not used here; off, two servers on one machine (or a
# non-root user with no home) do not trip over it.
control_socket_disable = True
