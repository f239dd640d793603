"""Fleet Lockdown settings: one module, driven by the environment.

Development works with zero configuration (SQLite in ``var/``, an embedded filesystem broker).
Production (``FLEET_ENV=production``) refuses to start without a secret key and an encryption
key, and turns on every transport-security setting so ``manage.py check --deploy`` is clean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dj_database_url
import django_stubs_ext

from config.env import ConfigurationError, env_bool, env_int, env_list, env_str

# Lets `ModelAdmin[Model]`, `QuerySet[Model]` and friends be subscripted at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("FLEET_VAR_DIR", str(BASE_DIR / "var")))

FLEET_ENV = env_str("FLEET_ENV", "development").strip().lower()
if FLEET_ENV not in {"development", "production"}:
    raise ConfigurationError(f"FLEET_ENV must be 'development' or 'production', got {FLEET_ENV!r}")
PRODUCTION = FLEET_ENV == "production"

# --- Secrets -------------------------------------------------------------------------------
# DANGER: these two keys protect every administrator credential of the fleet.
_DEV_SECRET_KEY = "dev-insecure-secret-key-never-use-in-production-0123456789abcdef"  # noqa: S105
# A fixed development Fernet key: data encrypted with it is worthless outside a dev machine.
_DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZmxlZXQtbG9ja2Rvd24ta2V5LTAwMDA="

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
# Comma-separated Fernet keys, newest first; `manage.py rotate_encryption_keys` re-encrypts.
FLEET_ENCRYPTION_KEYS = env_list("FLEET_ENCRYPTION_KEYS")
if PRODUCTION:
    if len(SECRET_KEY) < 50:
        raise ConfigurationError("FLEET_ENV=production needs DJANGO_SECRET_KEY (at least 50 characters)")
    if not FLEET_ENCRYPTION_KEYS:
        raise ConfigurationError("FLEET_ENV=production needs FLEET_ENCRYPTION_KEYS (Fernet keys, newest first)")
else:
    SECRET_KEY = SECRET_KEY or _DEV_SECRET_KEY
    FLEET_ENCRYPTION_KEYS = FLEET_ENCRYPTION_KEYS or [_DEV_ENCRYPTION_KEY]

DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# --- Applications --------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_celery_beat",
    "servers",
    "lockdown",
    "jobs",
    "reports",
    "rest_framework",
    "drf_spectacular",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "config.middleware.ReadableErrorPageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "servers.twofactor.TwoFactorEnforcementMiddleware",
    "servers.twofactor.PasswordChangeEnforcementMiddleware",
    # Times in the user's chosen time zone (default UTC); after auth, it reads the session.
    "reports.middleware.UserTimeZoneMiddleware",
    # Axes must be last: it turns lockouts into responses.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "servers.context_processors.tenancy",
                "servers.context_processors.environment",
            ],
        },
    },
]

# --- Database ------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES: dict[str, dict[str, Any]] = {
        "default": dict(dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60)))
    }
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Embedded default: web, worker and beat share one SQLite file. WAL lets readers run
    # beside the writer, the busy timeout waits instead of failing, and IMMEDIATE takes the
    # write lock at BEGIN so two writers queue instead of deadlocking on lock upgrade.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "fleet.sqlite3",
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Celery --------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
BROKER_DIR = VAR_DIR / "broker"
if not CELERY_BROKER_URL:
    # Embedded broker: kombu's filesystem transport, a real queue between processes.
    CELERY_BROKER_URL = "filesystem://"
    for _folder in ("queue", "processed", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Above the hard time limit of any task, so a running task is never redelivered.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 7200)}
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 1800)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 2100)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# The queue tasks are sent to (and a worker started with `-Q` the same name consumes): lets several
# deployments, or a test's private worker, share one Redis without taking each other's messages.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {"fleet-sweep": {"task": "jobs.sweep", "schedule": env_int("FLEET_SWEEP_EVERY_S", 30)}}
# The trend charts' daily points (reports.ComplianceSnapshot): hourly, the last run of a day stands.
CELERY_BEAT_SCHEDULE["reports-compliance-snapshot"] = {"task": "reports.compliance_snapshot", "schedule": 3600}
# Scheduled reports (reports.ReportSchedule): hourly, each period is sent once after it ends.
CELERY_BEAT_SCHEDULE["reports-scheduled"] = {"task": "reports.send_scheduled_reports", "schedule": 3600}
# Jobs: a run whose worker stops heartbeating for this long is failed by the reaper; an
# unclaimed queued run is sent again after this long (the broker may have lost it).
FLEET_HEARTBEAT_EVERY_S = env_int("FLEET_HEARTBEAT_EVERY_S", 15)
FLEET_HEARTBEAT_TIMEOUT_S = env_int("FLEET_HEARTBEAT_TIMEOUT_S", 120)
FLEET_REDISPATCH_AFTER_S = env_int("FLEET_REDISPATCH_AFTER_S", 60)
FLEET_GLOBAL_MAX_IN_FLIGHT = env_int("FLEET_GLOBAL_MAX_IN_FLIGHT", 200)
FLEET_RUN_TIMEOUT_S = env_int("FLEET_RUN_TIMEOUT_S", 1500)
# Alerts: webhook targets must match this allow-list (host names, IP addresses or CIDR ranges; "*" = any
# public host). Loopback, private, link-local (cloud metadata) and other internal addresses are refused
# unless an IP/CIDR entry names them explicitly.
# remote.networks: the networks managed hosts live in, for customers that set none of their own
# (empty: any address; production should name them).
FLEET_MANAGEMENT_NETWORKS = env_list("FLEET_MANAGEMENT_NETWORKS", [])
FLEET_TEST_CONNECTION_PER_MINUTE = env_int("FLEET_TEST_CONNECTION_PER_MINUTE", 10)
# A fleet harden or rollback of more than this many servers asks the person to type a confirmation.
FLEET_CONFIRM_TYPED_ABOVE = env_int("FLEET_CONFIRM_TYPED_ABOVE", 10)
FLEET_WEBHOOK_ALLOWED_HOSTS = env_list("FLEET_WEBHOOK_ALLOWED_HOSTS", ["*"])
FLEET_WEBHOOK_TIMEOUT_S = env_int("FLEET_WEBHOOK_TIMEOUT_S", 10)
FLEET_WEBHOOK_MAX_RETRIES = env_int("FLEET_WEBHOOK_MAX_RETRIES", 6)
FLEET_WEBHOOK_BACKOFF_BASE_S = env_int("FLEET_WEBHOOK_BACKOFF_BASE_S", 30)
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Auth, sessions, two-factor, throttling -------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Two-factor (TOTP) for every user, enrolment forced at the first log-in: always in production (the
# environment cannot switch it off there), opt-in elsewhere.
FLEET_REQUIRE_2FA = True if PRODUCTION else env_bool("FLEET_REQUIRE_2FA", False)
# Credential changes, user administration and waiver approval ask for the code again when the last
# one was entered longer ago than this (seconds).
FLEET_REAUTH_SECONDS = env_int("FLEET_REAUTH_SECONDS", 600)
OTP_TOTP_ISSUER = "Fleet Lockdown"
# The Django admin must not show TOTP seeds or their QR codes (whoever reads one owns the second factor).
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = 0.25  # hours: a locked-out username may try again after 15 minutes
# Two separate counters: per username whatever the address (guesses spread over many addresses still
# lock the account), and per address whatever the username (one address trying many accounts).
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The client address (for the lockout log) comes from X-Forwarded-For only behind a configured number
# of trusted proxies (FLEET_TRUSTED_PROXY_COUNT); otherwise a client could name any address.
FLEET_TRUSTED_PROXY_COUNT = env_int("FLEET_TRUSTED_PROXY_COUNT", 0)
AXES_IPWARE_PROXY_COUNT = FLEET_TRUSTED_PROXY_COUNT or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if FLEET_TRUSTED_PROXY_COUNT else ["REMOTE_ADDR"]
)
AXES_VERBOSE = False
SESSION_COOKIE_AGE = 8 * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

# --- Transport security (production) -------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy: no inline script or style anywhere (config.middleware).
FLEET_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)

# --- Static files, i18n, time -------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing root
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
LANGUAGE_CODE = "en-gb"
# config/formats: one ISO date format and a 24-hour clock on every page, whatever the locale says.
FORMAT_MODULE_PATH = ["config.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Uploads -------------------------------------------------------------------------------
# Server CSV imports and profile uploads are capped well below anything that could hurt.
FLEET_MAX_UPLOAD_BYTES = env_int("FLEET_MAX_UPLOAD_BYTES", 2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024

# --- Logging -------------------------------------------------------------------------------
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "servers.crypto.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": env_str("FLEET_LOG_LEVEL", "INFO")},
    # pyspnego logs every NTLM token at DEBUG ("NTLM step input/output: <base64>"): an NTLMv2 response
    # cracks offline, so these loggers stay at WARNING whatever FLEET_LOG_LEVEL says (and the redact
    # filter strips any authentication token that still reaches a handler).
    "loggers": {
        "axes": {"level": "WARNING"},
        **{name: {"level": "WARNING"} for name in ("spnego", "requests_ntlm", "winrm", "requests_credssp")},
    },
}

# --- Email ---------------------------------------------------------------------------------
EMAIL_BACKEND = env_str("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "fleet-lockdown@localhost")


# --- REST API (/api/v1/, api/) ------------------------------------------------------------------
# Personal tokens only (no session authentication, so no CSRF surface); the same tenancy Scope as
# the pages, narrowed by the token. Throttled per token.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.authentication.HasToken"],
    "DEFAULT_THROTTLE_CLASSES": ["api.authentication.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": env_str("FLEET_API_RATE", "600/min")},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "api.schema.ApiAutoSchema",
    "UNAUTHENTICATED_USER": None,
    # JSON only: `?format=` is an operation's own parameter (a profile export's yaml/json), not DRF's renderer switch
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Fleet Lockdown API",
    "DESCRIPTION": (
        "Servers, compliance and jobs of the customers your token may see. Authenticate with "
        "`Authorization: Bearer flk_…` (a personal token: Account → API tokens). Other customers' "
        "objects are 404; an action your role (or a read-only token) may not take is 403."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": "/api/v1/",
    "COMPONENT_SPLIT_REQUEST": True,
    # a rule's status and a server's are both `status`: each its own named enum (was StatusEnum: the server's)
    "ENUM_NAME_OVERRIDES": {
        "RuleStatusEnum": "api.serializers.RULE_STATUSES",
        "ServerStatusEnum": "servers.choices.ServerStatus",
        "DeclaredEnum": "servers.choices.Declared",
        "WaiverStatusEnum": "lockdown.choices.WaiverStatus",
        "WaiverKindEnum": "lockdown.choices.WaiverKind",
        "AlertKindEnum": "jobs.choices.AlertKind",
        "DroppedRuleStatusEnum": "api.webhooks.DROPPED_RULE_STATUSES",
        "WebhookEventEnum": "api.webhooks.WEBHOOK_EVENTS",
    },
    # OAS 3.1 for `webhooks:` (the payloads the app sends and their signature: api.webhooks).
    "OAS_VERSION": "3.1.0",
    "WEBHOOKS": ["api.webhooks.ALERT_WEBHOOK"],
    "POSTPROCESSING_HOOKS": [
        "api.webhooks.document_webhook_headers",  # first: it adds the payloads' components the next one names
        "drf_spectacular.hooks.postprocess_schema_enums",
    ],
}
