"""Settings of impex-hub, read from the environment (see README, "Configuration")."""

import json
import os
import secrets
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


def env_int(name: str, default: int) -> int:
    """Read an integer environment variable."""
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _secret_key() -> str:
    """Take SECRET_KEY from the environment, or a per-machine key kept out of the repo."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    key_file = VAR_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG")
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

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
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

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The project's own admin stylesheet (hub/admin.css), served like Django's: no CDN.
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "media/"

# Inboxes, archives, error folders and outboxes live under IMPEX_ROOT unless a connection
# names another folder or an s3:// / sftp:// URL.
IMPEX_ROOT = Path(os.environ.get("IMPEX_ROOT", VAR_DIR / "impex"))
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
# A single-record update (POST /api/events/...) is tried this many times before it fails for good.
IMPEX_EVENT_MAX_ATTEMPTS = env_int("IMPEX_EVENT_MAX_ATTEMPTS", 10)
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
# A queued job no worker has taken for this long is handed to the queue again.
IMPEX_REQUEUE_MINUTES = env_int("IMPEX_REQUEUE_MINUTES", 10)
# A cluster task waits this long for a connection another job is importing, then queues its job again.
IMPEX_CONNECTION_WAIT_SECONDS = env_int("IMPEX_CONNECTION_WAIT_SECONDS", 30)
# The inbox scan: a scanner's hold on a connection's scan lasts this long unless renewed (every third of it);
# a file first seen less than IMPEX_INBOX_QUIET_SECONDS after its last change is looked at again before it is taken.
# The contacts' mail about a job with errors attaches at most this many rows in error (CSV); the admin has all.
IMPEX_MAIL_MAX_ERROR_ROWS = env_int("IMPEX_MAIL_MAX_ERROR_ROWS", 10_000)
IMPEX_SCAN_LEASE_SECONDS = env_int("IMPEX_SCAN_LEASE_SECONDS", 120)
IMPEX_INBOX_QUIET_SECONDS = float(os.environ.get("IMPEX_INBOX_QUIET_SECONDS", "2"))
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
# Per-host logins, over SFTP_KEY_FILE / SFTP_PASSWORD: a JSON object keyed by "host" or "host:port", e.g.
# {"files.acme.example": {"key_file": "/run/secrets/acme_key"}, "10.0.0.5:2222": {"password": "..."}}.
SFTP_HOSTS = env_json_object("SFTP_HOSTS")
# Outbound calls (webhooks, webhook exporters, SFTP hosts) go only to public addresses, unless the host name, the
# address or a network holding it is listed here (comma-separated), e.g. "erp.internal,10.20.0.0/16,127.0.0.1".
IMPEX_ALLOWED_HOSTS_OUTBOUND = [
    h.strip() for h in os.environ.get("IMPEX_ALLOWED_HOSTS_OUTBOUND", "").split(",") if h.strip()
]

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
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

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
# The folder of django.core.mail.backends.filebased.EmailBackend (each mail a file there).
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH") or None
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "impex-hub@localhost")

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    CSRF_COOKIE_HTTPONLY = False
    X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# The HTTP API (SPEC section 10): JSON only, each request authenticated by a connection's token (no session,
# hence no CSRF exposure), 400 with the field errors for a body that does not validate.
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["impex.api_auth.ConnectionTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "impex-hub API",
    "DESCRIPTION": "Order update feeds, sync logs, single-record updates and paged extraction (SPEC section 10). "
    "Every request carries `Authorization: Bearer TOKEN`, a connection's token (impex_connection CODE --new-token).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Each route is also served without its trailing slash (config/api_urls.py); the schema lists it once.
    "PREPROCESSING_HOOKS": ["config.api_urls.schema_endpoints"],
}
# A feed request carries at most this many events.
API_MAX_FEED_EVENTS = env_int("API_MAX_FEED_EVENTS", 1000)
