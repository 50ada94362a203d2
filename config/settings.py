"""Settings of impex-hub, read from the environment (see README, "Configuration")."""

import ipaddress
import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("IMPEX_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable (1/true/yes/on)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_json_object(name: str) -> dict:
    """Read an environment variable holding a JSON object (empty: {}); refuse anything else at start-up."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ImproperlyConfigured(f'{name} must be a JSON object of objects, e.g. {{"host": {{"password": "..."}}}}')
    return value


def env_paths(name: str) -> list[str]:
    """Read an environment variable holding absolute paths separated by commas; refuse a relative one at start-up."""
    paths = [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]
    relative = [p for p in paths if not os.path.isabs(p)]
    if relative:
        raise ImproperlyConfigured(f"{name} takes absolute paths separated by commas, not {', '.join(relative)}")
    return paths


def env_int(name: str, default: int) -> int:
    """Read an integer environment variable."""
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


DEBUG = env_bool("DEBUG")


# SECRET_KEY (issue 16, R3). Every machine of one deployment (web servers, clusters, commands) must use the same key:
# django-q2 signs each task with it (a cluster drops tasks signed with another key as BadSignature), and sessions and
# CSRF tokens made on one web server must hold on the next. So it comes from the environment whenever DEBUG is off;
# a key file of this machine is only for development (`make run` sets DEBUG=1). The test suite's settings
# (config/test_settings.py) set a key of their own in the environment.
def _development_secret_key() -> str:
    """Return this machine's development key, kept in VAR_DIR/secret_key (made on first use)."""
    key_file = VAR_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG off, set the environment variable SECRET_KEY to a long random value "
            "(e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(50))'), the same on every "
            "machine of this deployment (web servers, clusters, commands): django-q2 signs tasks with it, and "
            "sessions and CSRF tokens depend on it. Only a development run (DEBUG=1, as `make run` sets) uses a "
            "key file of its own machine."
        )
    SECRET_KEY = _development_secret_key()

ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "config.apps.HubAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "import_export",
    "django_q",
    "rest_framework",
    "drf_spectacular",
    "impex",
    "syncapp",
    "orders",
]

WHITENOISE = "whitenoise.middleware.WhiteNoiseMiddleware"
MIDDLEWARE = [
    # /healthz and /metrics, answered before host checking, the HTTPS redirect, sessions and CSRF (config/ops.py).
    "config.ops.OpsEndpointMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# With DEBUG off, WhiteNoise serves /static/ from STATIC_ROOT (collectstatic): hashed names cached for a year, gzip
# copies made by collectstatic; before the session and auth middleware, so a stylesheet costs no query. With DEBUG on
# (make run) runserver serves the files where they are, and WhiteNoise would only warn that nothing was collected.
if not DEBUG:
    MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, WHITENOISE)

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",  # set but empty: the default
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A web server, a cluster and commands share the file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update({"timeout": 30, "transaction_mode": "IMMEDIATE"})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
# One way of writing dates on every admin page (config/formats: 2026-12-07 14:05), read in ISO order only.
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
# Where `collectstatic` gathers the static files that WhiteNoise serves with DEBUG off (make serve, compose.yaml).
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
# The project's own admin stylesheet (hub/admin.css), served like Django's: no CDN.
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "media/"

# Inboxes, archives, error folders and outboxes live under IMPEX_ROOT unless a connection
# names another folder or an s3:// / sftp:// URL.
IMPEX_ROOT = Path(os.environ.get("IMPEX_ROOT", VAR_DIR / "impex"))
# Local folders a connection, an export group or a file exporter may name, besides IMPEX_ROOT (and IMPEX_STORAGE when
# it is a local folder): absolute paths separated by commas. Links are followed; the hub's own files (var/, its code,
# its Python) are never allowed, whatever this lists (impex.locations).
IMPEX_ALLOWED_LOCAL_ROOTS = env_paths("IMPEX_ALLOWED_LOCAL_ROOTS")
IMPEX_BATCH_SIZE = env_int("IMPEX_BATCH_SIZE", 5000)
IMPEX_CHUNK_ROWS = env_int("IMPEX_CHUNK_ROWS", 20_000)
# PostgreSQL: ANALYZE the tables a file grows once it has written this many rows, then at each doubling.
IMPEX_ANALYZE_MIN_ROWS = env_int("IMPEX_ANALYZE_MIN_ROWS", 10_000)
IMPEX_MAX_FILE_BYTES = env_int("IMPEX_MAX_FILE_BYTES", 2 * 1024**3)
# The largest file or zip the admin's "Upload and import" page takes (bigger ones go through an inbox).
IMPEX_MAX_UPLOAD_BYTES = env_int("IMPEX_MAX_UPLOAD_BYTES", 1024**3)
IMPEX_MAX_ZIP_BYTES = env_int("IMPEX_MAX_ZIP_BYTES", 4 * 1024**3)
IMPEX_MAX_ZIP_ENTRIES = env_int("IMPEX_MAX_ZIP_ENTRIES", 1000)
IMPEX_MAX_ZIP_RATIO = env_int("IMPEX_MAX_ZIP_RATIO", 200)
# "Try it on a sample" (a descriptor's page) reads a whole uploaded file in the web request: keep it small.
IMPEX_SAMPLE_MAX_BYTES = env_int("IMPEX_SAMPLE_MAX_BYTES", 10 * 1024**2)
# A worker's claim on a job or a chunk lasts this long unless renewed; a killed worker's work is taken
# over once it runs out.
IMPEX_LEASE_SECONDS = env_int("IMPEX_LEASE_SECONDS", 60)
# Outbound webhooks: a file's customers are announced in events of at most this many ids.
IMPEX_WEBHOOK_BATCH_IDS = env_int("IMPEX_WEBHOOK_BATCH_IDS", 1000)
# impex_import and impex_job deliver the webhooks of their files for up to this long before they exit.
IMPEX_WEBHOOK_INLINE_SECONDS = env_int("IMPEX_WEBHOOK_INLINE_SECONDS", 30)
# POSTs of one batch of webhook deliveries in flight at once (each its own attempt, with its own timeout).
IMPEX_WEBHOOK_CONCURRENCY = env_int("IMPEX_WEBHOOK_CONCURRENCY", 4)
# A single-record update (POST /api/events/...) is tried this many times before it fails for good.
IMPEX_EVENT_MAX_ATTEMPTS = env_int("IMPEX_EVENT_MAX_ATTEMPTS", 10)
# The cluster's passes over leased work (order exports, the order feed, single-record updates, webhook deliveries):
# at most IMPEX_PASS_WORKERS tasks of one pass run at once and at most one more waits in the queue; a pass takes
# no new item after IMPEX_PASS_SECONDS and queues its follow-up behind the scans, imports and exports waiting.
IMPEX_PASS_WORKERS = env_int("IMPEX_PASS_WORKERS", 1)
IMPEX_PASS_SECONDS = env_int("IMPEX_PASS_SECONDS", 60)
IMPEX_POLL_SECONDS = float(os.environ.get("IMPEX_POLL_SECONDS", "0.5"))
# An import gives up (and can be run again) rather than wait forever on a lock held elsewhere.
IMPEX_LOCK_TIMEOUT_SECONDS = env_int("IMPEX_LOCK_TIMEOUT_SECONDS", 60)
IMPEX_STATEMENT_TIMEOUT_SECONDS = env_int("IMPEX_STATEMENT_TIMEOUT_SECONDS", 1800)
# Processes that apply one big file's chunks together: the job's runner asks for IMPEX_WORKERS - 1 helpers (child
# `impex_job` processes of a command, more tasks in the cluster) when a file of IMPEX_WORKERS_MIN_ROWS records or more
# starts. SQLite writes one transaction at a time, so there the runner works alone.
_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
IMPEX_WORKERS = env_int("IMPEX_WORKERS", 1 if _SQLITE else min(os.cpu_count() or 1, 4))
IMPEX_WORKERS_MIN_ROWS = env_int("IMPEX_WORKERS_MIN_ROWS", 100_000)
# impex_purge (and its daily schedule) deletes jobs, row errors, events, sent files and archived copies older than
# this many days; never the ledger of imported names, an open problem's evidence, or work not yet done.
IMPEX_RETENTION_DAYS = env_int("IMPEX_RETENTION_DAYS", 90)
if IMPEX_RETENTION_DAYS < 1:  # else the daily purge fails each day, seen only in django-q2's failed tasks
    raise ImproperlyConfigured(f"IMPEX_RETENTION_DAYS must be 1 or more (days kept), not {IMPEX_RETENTION_DAYS}")
# A queued job no worker has taken for this long is handed to the queue again.
IMPEX_REQUEUE_MINUTES = env_int("IMPEX_REQUEUE_MINUTES", 10)
# A cluster task waits this long for a connection another job is importing, then queues its job again.
IMPEX_CONNECTION_WAIT_SECONDS = env_int("IMPEX_CONNECTION_WAIT_SECONDS", 30)
# A patterns connection's files go in as they arrived (SPEC 3): a job waits for an earlier job with files of the
# same connection while that one runs, or while it has been queued for less than this (a worker takes it within
# seconds; one nobody takes, as with no cluster running, holds no later job up for longer).
IMPEX_ARRIVAL_WAIT_SECONDS = env_int("IMPEX_ARRIVAL_WAIT_SECONDS", 10)
# The inbox scan: a scanner's hold on a connection's scan lasts this long unless renewed (every third of it);
# a file first seen less than IMPEX_INBOX_QUIET_SECONDS after its last change is looked at again before it is taken.
# The contacts' mail about a job with errors attaches at most this many rows in error (CSV); the admin has all.
IMPEX_MAIL_MAX_ERROR_ROWS = env_int("IMPEX_MAIL_MAX_ERROR_ROWS", 10_000)
IMPEX_SCAN_LEASE_SECONDS = env_int("IMPEX_SCAN_LEASE_SECONDS", 120)
IMPEX_INBOX_QUIET_SECONDS = float(os.environ.get("IMPEX_INBOX_QUIET_SECONDS", "2"))
# The scan loop of connections scanned every few seconds also watches their local inboxes (watchdog) and scans one
# as soon as a file lands in it; off ("0"): it polls them only, every scan_seconds.
IMPEX_SCAN_WATCH = env_bool("IMPEX_SCAN_WATCH", True)
# Where the hub keeps job copies, archives, error folders and the outbox: an absolute folder,
# file:///path, s3://bucket/prefix or sftp://[user@]host[:port]/path (empty: IMPEX_ROOT).
IMPEX_STORAGE = os.environ.get("IMPEX_STORAGE", "")
# Local copies of files held on S3 or SFTP while they are read (removed afterwards).
IMPEX_CACHE_DIR = Path(os.environ.get("IMPEX_CACHE_DIR", VAR_DIR / "cache"))
# The sweeper removes what sits unchanged in IMPEX_CACHE_DIR this long (left by a killed process); a dead export
# run's temporary folder goes as soon as the run is failed.
IMPEX_CACHE_ORPHAN_HOURS = env_int("IMPEX_CACHE_ORPHAN_HOURS", 24)
# s3:// locations; credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or boto3's usual sources.
AWS_S3_ENDPOINT_URL = os.environ.get("AWS_S3_ENDPOINT_URL") or None
AWS_S3_REGION_NAME = os.environ.get("AWS_S3_REGION_NAME") or None
# sftp:// locations: a host missing from the known-hosts file is refused unless SFTP_ALLOW_UNKNOWN_HOSTS is on.
SFTP_KNOWN_HOST_FILE = os.environ.get("SFTP_KNOWN_HOST_FILE") or None
SFTP_ALLOW_UNKNOWN_HOSTS = env_bool("SFTP_ALLOW_UNKNOWN_HOSTS")
SFTP_KEY_FILE = os.environ.get("SFTP_KEY_FILE") or None
SFTP_PASSWORD = os.environ.get("SFTP_PASSWORD") or None
# The SFTP hosts the hub logs in to, a JSON object keyed by "host" or "host:port": an entry's own key_file / password,
# or {} for SFTP_KEY_FILE / SFTP_PASSWORD, e.g. {"files.acme.example": {"key_file": "/run/secrets/acme_key"},
# "10.0.0.5:2222": {"password": "..."}, "sftp.example": {}}. A host not listed (other than IMPEX_STORAGE's) is
# refused: no login goes to a host a connection editor names.
SFTP_HOSTS = env_json_object("SFTP_HOSTS")
# ftp:// and ftps:// (explicit TLS) locations: the FTP hosts the hub logs in to, a JSON object keyed by "host" or
# "host:port", each entry its own password or {} for FTP_PASSWORD, e.g. {"ftp.acme.example": {"password": "..."},
# "ftp.partner.example": {}}; the user comes from the location (default anonymous). A host not listed (other than
# IMPEX_STORAGE's) is refused, as for SFTP.
FTP_HOSTS = env_json_object("FTP_HOSTS")
FTP_PASSWORD = os.environ.get("FTP_PASSWORD") or None
# The CA certificates (PEM) that FTPS servers' certificates are checked against; unset: the system's CAs.
FTPS_CA_FILE = os.environ.get("FTPS_CA_FILE") or None
# Seconds an FTP connection waits for the server: to connect, and for each reply or block of data of a transfer.
FTP_TIMEOUT_SECONDS = float(os.environ.get("FTP_TIMEOUT_SECONDS", "30"))
# Outbound calls (webhooks, webhook exporters, SFTP and FTP hosts) go only to public addresses, unless the host name,
# the address or a network holding it is listed here (comma-separated), e.g. "erp.internal,10.20.0.0/16,127.0.0.1".
IMPEX_ALLOWED_HOSTS_OUTBOUND = [
    h.strip() for h in os.environ.get("IMPEX_ALLOWED_HOSTS_OUTBOUND", "").split(",") if h.strip()
]

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Names with the content's hash (a page always gets the stylesheet it was made with, so it may be cached for a
    # year) and a gzip copy of each, made by collectstatic; with DEBUG on (make run) the plain names, read in place.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    "import_export": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
}
IMPORT_EXPORT_TMP_STORAGE_CLASS = "import_export.tmp_storages.MediaStorage"
IMPORT_EXPORT_SKIP_ADMIN_LOG = False
# SPEC 13: an entity page's import needs the model's change permission, its export the view permission.
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "change"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"

Q_CLUSTER = {
    "name": "impex-hub",
    "workers": env_int("Q_WORKERS", 2),
    "timeout": env_int("Q_TIMEOUT", 3600),
    "retry": env_int("Q_RETRY", 4000),
    "max_attempts": env_int("Q_MAX_ATTEMPTS", 3),
    "catch_up": False,
    "orm": "default",
    "save_limit": 1000,
}
if os.environ.get("Q_REDIS_URL"):
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = os.environ["Q_REDIS_URL"]
# django-q2's broker, whose cluster also records its heartbeat in the database for /healthz and /metrics.
Q_CLUSTER["broker_class"] = "impex.brokers.HubRedis" if "redis" in Q_CLUSTER else "impex.brokers.HubORM"

# Mail: EMAIL_BACKEND from the environment wins (SMTP with the EMAIL_HOST... settings below, or any backend).
# Unset, a development run (DEBUG, as `make run` sets) saves each mail as a file in var/mail and logs one line
# saying so: printed whole, the demo's mail about its refused row filled the first run's console. Unset with DEBUG
# off, mails print to the console as before.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "config.mail.DevelopmentFileBackend" if DEBUG else "django.core.mail.backends.console.EmailBackend"
)
# The folder of the file-based backends (each mail a file there).
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH") or str(VAR_DIR / "mail")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "impex-hub@localhost")
# The sender of the mails Django itself sends to ADMINS (a server error): the same address unless set.
SERVER_EMAIL = os.environ.get("SERVER_EMAIL") or DEFAULT_FROM_EMAIL
# Who gets the mail of a hub-wide problem (one of no connection, e.g. a webhook delivery given up): comma separated.
ADMINS = [(a, a) for a in (x.strip() for x in os.environ.get("ADMINS", "").split(",")) if a]

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    CSRF_COOKIE_HTTPONLY = False
    X_FRAME_OPTIONS = "DENY"


# HTTPS (issue 16, L5): off unless set, so `make run` and other local runs work over plain http; README "Production"
# gives the values behind TLS, with which `manage.py check --deploy` is clean.
def env_proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """Read SECURE_PROXY_SSL_HEADER as "HTTP_X_FORWARDED_PROTO,https" (a request.META key and its HTTPS value)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, _, value = (part.strip() for part in raw.partition(","))
    if not header.startswith("HTTP_") or not value:
        raise ImproperlyConfigured(
            f'{name} must be "HEADER,value" with HEADER as request.META names it, e.g. "HTTP_X_FORWARDED_PROTO,https"'
        )
    return header, value


SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE")
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE")
# Only behind a proxy that sets (or strips) this header on every request: otherwise a client could claim HTTPS.
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")

# Login throttling (issue 16, L6; django-axes): after AXES_FAILURE_LIMIT failed logins in a row for one username from
# one address, that username is refused from that address, the right password included, until AXES_COOLOFF_MINUTES
# have passed since the last attempt (0: until a superuser deletes the lock under "Axes" or runs `axes_reset`).
INSTALLED_APPS += ["axes"]
# Last, as axes asks: it turns a refused login into the lockout page.
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15)) or None
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.security.lockout_response"
AXES_CLIENT_IP_CALLABLE = "config.security.client_ip"
# Failures and lockouts are still logged; verbose would add a start-up line to every command's output.
AXES_VERBOSE = False
# The number of reverse proxies in front of the web server, each appending to X-Forwarded-For: the client's address
# is then taken from there (0: the connecting address, for a server that clients reach directly).
IMPEX_PROXY_COUNT = env_int("IMPEX_PROXY_COUNT", 0)


# GET /metrics (SPEC 11; README "Operations") is closed unless one of these is set; with both, both are required.
# IMPEX_METRICS_TOKEN: the scraper sends "Authorization: Bearer TOKEN" (at least 16 characters).
IMPEX_METRICS_TOKEN = os.environ.get("IMPEX_METRICS_TOKEN", "").strip()
if IMPEX_METRICS_TOKEN and len(IMPEX_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("IMPEX_METRICS_TOKEN is too short: use at least 16 random characters")


def env_networks(name: str) -> list[str]:
    """Read an environment variable of IP networks or addresses separated by commas; refuse a bad one at start-up."""
    networks = []
    for part in (p.strip() for p in os.environ.get(name, "").split(",")):
        if not part:
            continue
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {part!r} is not an IP address or network ({exc})") from exc
    return networks


# IMPEX_METRICS_ALLOWED_IPS: the scraper's address (as IMPEX_PROXY_COUNT finds it) is in one of these networks,
# e.g. "10.0.5.0/24,127.0.0.1". With neither this nor IMPEX_METRICS_TOKEN set, /metrics answers loopback only.
IMPEX_METRICS_ALLOWED_IPS = env_networks("IMPEX_METRICS_ALLOWED_IPS")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "task_lines_at_debug": {"()": "config.logs.TaskLinesAtDebug"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "mail_admins": {
            "level": "ERROR",
            "filters": ["require_debug_false"],
            "class": "django.utils.log.AdminEmailHandler",
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own console handler (DEBUG on) would print every django.* line a second time beside the root's:
        # its lines reach the console through the root only; server errors are still mailed to ADMINS (DEBUG off).
        "django": {"handlers": ["mail_admins"], "level": "INFO"},
        # The cluster's four INFO lines per task are shown with LOG_LEVEL=DEBUG only (config/logs.py).
        "django-q": {"filters": ["task_lines_at_debug"]},
    },
}

# The HTTP API (SPEC section 10): JSON only, each request authenticated by a connection's token (no session,
# hence no CSRF exposure), 400 with the field errors for a body that does not validate.
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Reads the body itself (Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not apply: IMPEX_API_MAX_BODY does); bad JSON,
    # nesting too deep and lone surrogates are a 400.
    "DEFAULT_PARSER_CLASSES": ["impex.api_limits.JSONBodyParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["impex.api_auth.ConnectionTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["impex.api_limits.TokenRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "impex-hub API",
    "DESCRIPTION": "Order update feeds, sync logs, single-record updates, paged extraction, pushed files and their "
    "import jobs (SPEC section 10). "
    "Every request carries `Authorization: Bearer TOKEN`, a connection's token (impex_connection CODE --new-token).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # SPEC 13: anonymous users see the login page only; the schema is for integrations (a token) and staff.
    "SERVE_PERMISSIONS": ["impex.api_auth.ConnectionOrStaff"],
    "SERVE_AUTHENTICATION": [
        "impex.api_auth.ConnectionTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Each route is also served without its trailing slash (config/api_urls.py); the schema lists it once.
    "PREPROCESSING_HOOKS": ["config.api_urls.schema_endpoints"],
}
# A form post carries at most this many fields (Django's default, 1000, stops a descriptor's page at ~190 columns:
# a column is six fields; the sample page takes 500 columns).
DATA_UPLOAD_MAX_NUMBER_FIELDS = env_int("DATA_UPLOAD_MAX_NUMBER_FIELDS", 5000)
# A feed request carries at most this many events.
API_MAX_FEED_EVENTS = env_int("API_MAX_FEED_EVENTS", 1000)

# -- Request bodies, uploads and the API's request rate (SPEC 10, 13) ------------------------------------------------
# Every body is judged by its declared length (Content-Length) before anything reads it: the middleware comes
# before the CSRF check, which reads (and spools) a form post to find its token. A body without a length (chunked) is
# refused with 411, since Django's WSGI handler would read it as empty.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.csrf.CsrfViewMiddleware"), "impex.middleware.RequestBodyLimitMiddleware"
)
# The API reads bodies up to this many bytes; a bigger one gets a JSON 413.
IMPEX_API_MAX_BODY = env_int("IMPEX_API_MAX_BODY", 10 * 1024**2)
# Someone not logged in (the login form) sends at most this many bytes; a bigger body gets 413 unread.
IMPEX_ANONYMOUS_MAX_BODY = env_int("IMPEX_ANONYMOUS_MAX_BODY", 64 * 1024)
# A logged-in user's upload is stopped once its files pass IMPEX_MAX_UPLOAD_BYTES, before more of it is stored.
FILE_UPLOAD_HANDLERS = [
    "impex.uploadhandler.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# Requests per API token (N/s, N/min, N/hour or N/day); past it, 429 with Retry-After.
IMPEX_API_RATE = os.environ.get("IMPEX_API_RATE", "600/min").strip()
_count, _, _period = IMPEX_API_RATE.partition("/")
if not (_count.isdigit() and int(_count) > 0 and _period in {"s", "sec", "m", "min", "h", "hour", "d", "day"}):
    raise ImproperlyConfigured(f"IMPEX_API_RATE is {IMPEX_API_RATE!r}: requests per s, min, hour or day, e.g. 600/min")
# The rate is counted in the database (a cache table every web process and machine shares, made by migrate),
# under a lock on the token's row, so several web servers count one token together, and exactly.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Django's database cache, written in one statement a request (impex.api_limits.RateCountCache), never culled.
    "api_rate": {"BACKEND": "impex.api_limits.RateCountCache", "LOCATION": "impex_api_rate"},
}
