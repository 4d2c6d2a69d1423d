"""CompanyOS settings, read from the environment through django-environ.

Every variable is documented in ``.env.example``. Defaults are safe for
production: DEBUG is off, secrets have no default, cookies are secure.
"""

from datetime import timedelta
from pathlib import Path

import csp.constants
import environ
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from companyos.foundation.db import aliases_from_environment
from companyos.foundation.redis_sentinel import channel_layer_host, master_url, parse_sentinels

BASE_DIR = Path(__file__).resolve().parents[2]

env = environ.Env()
# A local .env (written by `python dev.py run` for newcomers) is read when
# present; ENV_FILE points elsewhere, and real environment variables win.
environ.Env.read_env(env.str("ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    # The staff console's admin site: companyos.foundation.console.site.CompanyOSAdminSite.
    "companyos.foundation.console.site.CompanyOSAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    # Login throttling, TOTP two-factor and the Content-Security-Policy (docs/security.md).
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "csp",
    # Triggers declared in model Meta and written into migrations: the change history.
    "pgtrigger",
    # System jobs and their schedule on PostgreSQL (docs/jobs.md);
    # its admin shows what ran, when, how long, what failed and what is queued.
    "procrastinate.contrib.django",
    # The platform layer: start-up checks and the encryption-key commands.
    "companyos.foundation",
    "core",
    "integrations",
    "development",
    "design",
    "social",
    "agents",
    "analytics",
    # The websocket edge: listen_events and bench_events.
    "companyos.realtime",
    # The HTTP API edge (docs/api.md); "ninja" serves its docs page's static files.
    "ninja",
    "companyos.api",
    # Change history and staff roles; last, so its post_migrate
    # runs after every app's tables and permissions exist.
    "companyos.foundation.console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # GET/HEAD may read from replicas that replayed this browser's last write (docs/scaling.md).
    "companyos.foundation.db.middleware.ReadYourWritesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session passed a TOTP token.
    "django_otp.middleware.OTPMiddleware",
    # Attributes every change a request makes to its user and source.
    "companyos.foundation.console.history.HistoryMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

# The webhook intake's chain (companyos/config/webhook_asgi.py): the
# middleware above that shapes any answer (HTTPS redirect, allowed hosts,
# security headers), in the same order, with their hooks on the event loop
# so a delivery never waits in a thread. The rest concerns browsers and staff.
WEBHOOK_MIDDLEWARE = [
    "companyos.config.webhook_asgi.OnTheLoopSecurityMiddleware",
    "companyos.config.webhook_asgi.OnTheLoopCSPMiddleware",
    "companyos.config.webhook_asgi.OnTheLoopCommonMiddleware",
    "companyos.config.webhook_asgi.OnTheLoopXFrameOptionsMiddleware",
]

ROOT_URLCONF = "companyos.config.urls"
WSGI_APPLICATION = "companyos.config.wsgi.application"
ASGI_APPLICATION = "companyos.config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The console's admin overrides must win over django.contrib.admin's own templates.
        "DIRS": [BASE_DIR / "companyos" / "foundation" / "console" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # {{ CSP_NONCE }} for the rare inline <script>/<style> a page needs.
                "csp.context_processors.nonce",
            ],
        },
    },
]

# --- PostgreSQL -------------------------------------------------------------
# docs/scaling.md: the primary (a multi-host URL with
# ?target_session_attrs=read-write finds whichever host is the primary, also
# after a failover), read replicas, and a direct URL past a transaction-mode
# PgBouncer for what needs a session (LISTEN, the job worker).
DATABASE_CONNECT_TIMEOUT = env.int("DATABASE_CONNECT_TIMEOUT", default=5)
# Under ASGI every request runs in a thread of its own, so a persistent
# per-thread connection (CONN_MAX_AGE > 0) leaves one open per request until
# the server runs out; psycopg's pool hands connections back instead, and
# measured twice the webhook throughput of connecting per request
# (docs/benchmarks.md). DATABASE_POOL_MAX_SIZE=0 turns it off, and
# CONN_MAX_AGE then applies (for WSGI servers).
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=10)
DATABASE_POOL_MIN_SIZE = env.int("DATABASE_POOL_MIN_SIZE", default=1)
DATABASE_POOL_TIMEOUT = env.float("DATABASE_POOL_TIMEOUT", default=10.0)
CONN_MAX_AGE = env.int("CONN_MAX_AGE", default=60)


def _configure_database(entry: dict) -> None:
    entry["OPTIONS"].setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT)
    if DATABASE_POOL_MAX_SIZE:
        entry["CONN_MAX_AGE"] = 0
        entry["OPTIONS"]["pool"] = {
            "min_size": DATABASE_POOL_MIN_SIZE,
            "max_size": DATABASE_POOL_MAX_SIZE,
            "timeout": DATABASE_POOL_TIMEOUT,
        }
    else:
        entry["CONN_MAX_AGE"] = CONN_MAX_AGE
    # With the pool, Django then checks each connection as it is checked out
    # (one round trip), so one to a server that died or was demoted is
    # replaced before a request gets it: a failover costs requests only
    # while no primary answers.
    entry["CONN_HEALTH_CHECKS"] = True


DATABASES = aliases_from_environment(
    env.db_url_config,
    primary_url=env.str("DATABASE_URL"),
    replica_urls=env.list("DATABASE_REPLICA_URLS", default=[]),
    direct_url=env.str("DATABASE_DIRECT_URL", default=""),
    configure=_configure_database,
)
DATABASE_ROUTERS = ["companyos.foundation.db.router.ReplicaRouter"]
# A replica further behind than this (seconds) is skipped.
DATABASE_REPLICA_MAX_LAG_SECONDS = env.float("DATABASE_REPLICA_MAX_LAG_SECONDS", default=30.0)
# How long a replica's replayed position and lag are trusted before checking again.
DATABASE_REPLICA_CHECK_SECONDS = env.float("DATABASE_REPLICA_CHECK_SECONDS", default=1.0)
# How long an unreachable replica is skipped before it is tried again.
DATABASE_REPLICA_RETRY_SECONDS = env.float("DATABASE_REPLICA_RETRY_SECONDS", default=5.0)
# Models (app labels or app.Model) always read on the primary, besides
# AUTH_USER_MODEL: who someone is, their session, and the queues whose rows are claimed.
DATABASE_PRIMARY_MODELS = [
    "auth", "sessions", "contenttypes", "core.ApiToken", "agents.AgentTask", "integrations.WebhookDelivery",
    "procrastinate",
]  # fmt: skip
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache layers, sessions, channel layer --------
REDIS_URL = env.str("REDIS_URL")
# Redis behind Sentinel (docs/scaling.md): every Redis use asks these sentinels
# (host:port, comma-separated) for the current master of REDIS_SENTINEL_MASTER;
# REDIS_URL then only gives the password and the database number.
REDIS_SENTINELS = parse_sentinels(env.list("REDIS_SENTINELS", default=[]))
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", default="companyos")
# Every key this deployment writes starts with this, so several deployments
# (or test runs) can share one Redis server without touching each other.
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="companyos")

# How the Redis connections behave, chosen for a cache that must never take a
# page down with it (see docs/redis.md):
# - connect timeout 0.25 s: a local/LAN Redis accepts in well under 1 ms, so a
#   connect that takes longer means it is gone; pages must not wait seconds.
# - read timeout 1 s: GET/SET answer in under a millisecond; 1 s leaves room
#   for a large value or a busy server without hanging a worker.
# - one retry after 10-50 ms: heals a pooled connection the server closed
#   (restart, idle timeout) without the caller noticing. redis-py's default
#   (10 retries with backoff up to 1 s) would stall every call during an outage.
# - a blocking pool of 50 connections per process: a burst waits up to 0.5 s
#   for a free connection instead of failing with "Too many connections".
# - companyos.foundation.redis_client.ResilientRedis adds a circuit breaker: after a
#   failure, calls skip Redis for REDIS_BREAKER_SECONDS instead of each paying
#   the timeout, and the outage is logged once per REDIS_OUTAGE_LOG_SECONDS.
# - hiredis (requirements.txt) parses replies when installed, which redis-py
#   and django-redis pick up by themselves: bench/cache.py measured raw GETs
#   ~1.2x faster with it than with the pure-Python parser (docs/redis.md).
REDIS_BREAKER_SECONDS = env.float("REDIS_BREAKER_SECONDS", default=2.0)
REDIS_OUTAGE_LOG_SECONDS = env.float("REDIS_OUTAGE_LOG_SECONDS", default=30.0)
REDIS_CONNECTION_OPTIONS = {
    "CLIENT_CLASS": "django_redis.client.DefaultClient",
    "REDIS_CLIENT_CLASS": "companyos.foundation.redis_client.ResilientRedis",
    "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
    "CONNECTION_POOL_KWARGS": {
        "max_connections": env.int("REDIS_MAX_CONNECTIONS", default=50),
        "timeout": 0.5,
        "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
        "socket_keepalive": True,
    },
    "SOCKET_CONNECT_TIMEOUT": env.float("REDIS_CONNECT_TIMEOUT", default=0.25),
    "SOCKET_TIMEOUT": env.float("REDIS_SOCKET_TIMEOUT", default=1.0),
    # An unreachable Redis makes reads miss and writes be skipped, never an
    # error page; ResilientRedis logs it (rate-limited) instead of django-redis.
    "IGNORE_EXCEPTIONS": True,
}
REDIS_CACHE_LOCATION = REDIS_URL
if REDIS_SENTINELS:
    REDIS_CACHE_LOCATION = master_url(REDIS_URL, REDIS_SENTINEL_MASTER)
    # Each new connection asks the sentinels for the master; reads stay on the
    # master too (a replica could return a session or lock state it has not
    # received yet). redis-py has no blocking Sentinel pool: "timeout" goes.
    REDIS_CONNECTION_OPTIONS |= {
        "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
        "CONNECTION_POOL_CLASS": "redis.sentinel.SentinelConnectionPool",
        "CONNECTION_POOL_KWARGS": {
            key: value for key, value in REDIS_CONNECTION_OPTIONS["CONNECTION_POOL_KWARGS"].items() if key != "timeout"
        },
        "SENTINELS": REDIS_SENTINELS,
        "SENTINEL_KWARGS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }


def _cache_layer(name: str, timeout: int) -> dict:
    """One cache alias: the shared Redis pool, its own key prefix and TTL."""
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_CACHE_LOCATION,
        "KEY_PREFIX": f"{REDIS_KEY_PREFIX}:{name}",
        "TIMEOUT": timeout,
        "OPTIONS": REDIS_CONNECTION_OPTIONS,
    }


# The layers of companyos.foundation.cache.get_layer(name); all share one connection pool
# per process (django-redis keys pools by URL).
CACHES = {
    "default": _cache_layer("default", 300),
    "sessions": _cache_layer("sessions", 24 * 3600),
    "api": _cache_layer("api", 5 * 60),
    "agent_results": _cache_layer("agent_results", 3600),
    "analytics": _cache_layer("analytics", 15 * 60),
}

# Sessions are written to PostgreSQL and cached in the "sessions" layer, so a
# Redis outage only costs a query per request: nobody is logged out. They last
# as long as their cache entry (24 h).
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_CACHE_ALIAS = "sessions"
SESSION_COOKIE_AGE = CACHES["sessions"]["TIMEOUT"]

# --- Real-time events: channel layer and websocket protocol (H-events) --------
# docs/realtime.md explains the choice. The pub/sub layer won the measured
# fan-out (bench_events): a group send is one PUBLISH, delivered once per
# server process, where the classic layer writes one Redis entry per member
# channel. Either way each process is the one member of a group for all its
# connections (companyos/realtime/feed.py). Delivery is at most once in both; clients
# catch up with `since`. CHANNEL_LAYER=classic switches back for comparison.
# Through a Sentinel failover the pub/sub layer silently drops what is
# published before it subscribes again, the classic layer raises instead;
# the consumer's gap repair sends both from the stored rows, so the faster
# layer stays the default (bench_layer_failover, docs/scaling.md).
# Groups are spread over these Redis servers by channels-redis's own hashing
# (comma-separated Redis URLs, or master names with REDIS_SENTINELS); by
# default the one of REDIS_URL / REDIS_SENTINEL_MASTER. docs/benchmarks.md
# measures what a second shard buys.
CHANNEL_LAYER_SHARDS = env.list(
    "CHANNEL_LAYER_SHARDS", default=[REDIS_SENTINEL_MASTER if REDIS_SENTINELS else REDIS_URL]
)


def _channel_layer_hosts(**options) -> list[dict]:
    return [
        channel_layer_host(shard, url=REDIS_URL, sentinels=REDIS_SENTINELS, **options) for shard in CHANNEL_LAYER_SHARDS
    ]


CHANNEL_LAYER_BACKENDS = {
    "pubsub": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": _channel_layer_hosts(), "prefix": f"{REDIS_KEY_PREFIX}:asgi"},
    },
    "classic": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # Receiving blocks in BZPOPMIN for 5 s; redis-py 8's default 5 s
            # socket timeout would race it and kill idle consumers.
            "hosts": _channel_layer_hosts(socket_timeout=15),
            "prefix": f"{REDIS_KEY_PREFIX}:asgi",
            # Messages a channel (a process's, per group) may have waiting before new ones are dropped.
            "capacity": 1000,
            # An undelivered message is worthless after a minute: the client replays with `since`.
            "expiry": 60,
            # Group membership must outlive the longest websocket connection (a week).
            "group_expiry": 7 * 86400,
        },
    },
}
CHANNEL_LAYER = env.str("CHANNEL_LAYER", default="pubsub")
CHANNEL_LAYERS = {"default": CHANNEL_LAYER_BACKENDS[CHANNEL_LAYER]}
# Group names start with this (Redis keys/channels also carry the prefix above).
EVENTS_GROUP_PREFIX = "events"
# The model events are stored in (the outbox and the replay source), named
# like AUTH_USER_MODEL so the platform imports no domain app.
EVENTS_MODEL = "analytics.Event"
# How long a commit may wait for the channel layer to accept an event (seconds).
EVENTS_SEND_TIMEOUT = env.float("EVENTS_SEND_TIMEOUT", default=2.0)
# Client frames above this size are refused with an `frame_too_large` error.
EVENTS_MAX_FRAME_BYTES = 64 * 1024
# Replay also re-sends events up to this many seconds older than `since`: an
# event's id is taken at INSERT, so a transaction committing late can land
# behind an id the client already saw. Clients drop ids they already have.
EVENTS_REPLAY_OVERLAP_SECONDS = env.float("EVENTS_REPLAY_OVERLAP_SECONDS", default=2.0)
# At most this many events are replayed; beyond, a `replay_truncated` error says to resync.
EVENTS_REPLAY_LIMIT = env.int("EVENTS_REPLAY_LIMIT", default=5000)
# A connection re-checks its memberships at most this often while events flow
# (removal also pushes a control message; this covers a lost one).
EVENTS_MEMBERSHIP_RECHECK_SECONDS = 30.0
# Every this many seconds each server process reads its organizations' new
# events, sends connections the ones the channel layer lost, then a `position`
# frame (companyos/realtime/feed.py). 0 turns gap repair and positions off.
EVENTS_POSITION_SECONDS = env.float("EVENTS_POSITION_SECONDS", default=2.0)
# Frames waiting for a client that does not read, at most (characters); then
# it is closed with 4008 and resumes with `since`. Bounds memory per connection.
EVENTS_SEND_BUFFER_BYTES = env.int("EVENTS_SEND_BUFFER_BYTES", default=256 * 1024)
# (organization, topic) subscriptions one connection may hold.
EVENTS_MAX_SUBSCRIPTIONS = 50
# Subscribes with `since` one connection may send a minute (each replays up to EVENTS_REPLAY_LIMIT).
EVENTS_REPLAYS_PER_MINUTE = 10
# The same bounds per API token (per user for browser sessions) across all its
# connections and server processes, counted in Redis (companyos/realtime/limits.py),
# so that opening more connections does not multiply them. 0 means no limit.
# Open connections; one more is closed with 4429.
EVENTS_MAX_CONNECTIONS_PER_TOKEN = env.int("EVENTS_MAX_CONNECTIONS_PER_TOKEN", default=20)
# (organization, topic) subscriptions held across the connections.
EVENTS_MAX_SUBSCRIPTIONS_PER_TOKEN = env.int("EVENTS_MAX_SUBSCRIPTIONS_PER_TOKEN", default=200)
# Subscribes with `since` a minute across the connections.
EVENTS_REPLAYS_PER_MINUTE_PER_TOKEN = env.int("EVENTS_REPLAYS_PER_MINUTE_PER_TOKEN", default=30)
# A connection's counts in Redis expire this long after its last heartbeat
# (every third of it), so those of a process that died go by themselves.
EVENTS_SESSION_TTL_SECONDS = 60.0

# --- Agent task queue (docs/agents.md) ---------------------------------
# A claimed task's lease; the worker renews it every third of this while it
# works, so it only bounds how long a dead worker's task waits to be retried.
AGENT_TASK_LEASE_SECONDS = env.float("AGENT_TASK_LEASE_SECONDS", default=60.0)
# Retry backoff after failed attempt n: base * 2**(n-1), capped, with jitter.
AGENT_TASK_RETRY_BASE_SECONDS = env.float("AGENT_TASK_RETRY_BASE_SECONDS", default=5.0)
AGENT_TASK_RETRY_MAX_SECONDS = env.float("AGENT_TASK_RETRY_MAX_SECONDS", default=600.0)
# Idle workers wake on NOTIFY at once; this poll only finds scheduled tasks.
AGENT_WORKER_POLL_SECONDS = env.float("AGENT_WORKER_POLL_SECONDS", default=2.0)

# --- Background worker and scheduler (docs/jobs.md) ----------------------
# Apps declare their system jobs in <app>/jobs.py.
PROCRASTINATE_AUTODISCOVER_MODULE_NAME = "jobs"
# A worker proves it is alive this often; a job whose worker has been silent
# for JOBS_STALLED_WORKER_SECONDS is retried (once) by retry_stalled_jobs.
JOBS_HEARTBEAT_SECONDS = env.float("JOBS_HEARTBEAT_SECONDS", default=10.0)
JOBS_STALLED_WORKER_SECONDS = env.float("JOBS_STALLED_WORKER_SECONDS", default=30.0)
# Idle workers wake on NOTIFY at once; this poll finds jobs scheduled for later.
JOBS_POLL_SECONDS = env.float("JOBS_POLL_SECONDS", default=5.0)
# A scheduler (re)started after an outage still runs each periodic job's last
# missed period if it is at most this old; older ones wait for the next period.
SCHEDULER_CATCH_UP_SECONDS = env.float("SCHEDULER_CATCH_UP_SECONDS", default=86400.0)
PROCRASTINATE_PERIODIC_DEFAULTS = {"max_delay": SCHEDULER_CATCH_UP_SECONDS}
# Periods of the periodic jobs, as cron expressions (an optional 6th field is seconds).
SCHEDULE_RETRY_STALLED_JOBS = env.str("SCHEDULE_RETRY_STALLED_JOBS", default="* * * * *")
SCHEDULE_PROCESS_WEBHOOK_DELIVERIES = env.str("SCHEDULE_PROCESS_WEBHOOK_DELIVERIES", default="* * * * *")
SCHEDULE_REFRESH_ROLLUPS = env.str("SCHEDULE_REFRESH_ROLLUPS", default="*/5 * * * *")
SCHEDULE_PRUNE_ANALYTICS = env.str("SCHEDULE_PRUNE_ANALYTICS", default="30 3 * * *")
SCHEDULE_PRUNE_WEBHOOK_DELIVERIES = env.str("SCHEDULE_PRUNE_WEBHOOK_DELIVERIES", default="40 3 * * *")
SCHEDULE_PRUNE_HISTORY = env.str("SCHEDULE_PRUNE_HISTORY", default="50 3 * * *")
SCHEDULE_PRUNE_JOBS = env.str("SCHEDULE_PRUNE_JOBS", default="0 4 * * *")
SCHEDULE_PUBLISH_DUE_POSTS = env.str("SCHEDULE_PUBLISH_DUE_POSTS", default="* * * * * */10")
SCHEDULE_REFRESH_POST_ENGAGEMENT = env.str("SCHEDULE_REFRESH_POST_ENGAGEMENT", default="*/30 * * * *")
# Finished jobs are kept this long for the admin, then pruned.
JOBS_RETENTION_DAYS = env.int("JOBS_RETENTION_DAYS", default=14)

# --- Field encryption ---------------------------------------------------------
# Fernet keys, newest first; independent of SECRET_KEY.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS")

# --- Auth -------------------------------------------------------------------
AUTH_USER_MODEL = "core.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes refuses a locked-out login before the password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# Login throttling (django-axes, docs/security.md): after LOGIN_FAILURE_LIMIT
# wrong passwords for one account, or from one address, logins from there are
# refused (429) for LOGIN_LOCKOUT_MINUTES, even with the right password.
# Attempts live in PostgreSQL, so admins see them (Access attempts) and unlock
# by deleting the row or with `manage.py axes_reset_username` / `axes_reset_ip`.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_RESET_ON_SUCCESS = True
# Lockouts are still logged as warnings; the INFO line per login and per start is noise.
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "companyos.foundation.network.client_address"
# Emails are case-insensitive: ADMIN@ and admin@ share one failure count.
AXES_USERNAME_CALLABLE = "companyos.foundation.console.login.attempted_username"
# TOTP two-factor (django-otp): a staff member with a confirmed device must
# give its code at login; with ADMIN_REQUIRE_2FA, members of the `admin` role
# must have one (they set it up under "TOTP devices" before it is turned on).
ADMIN_REQUIRE_2FA = env.bool("ADMIN_REQUIRE_2FA", default=False)
OTP_TOTP_ISSUER = "CompanyOS"

# --- Internationalisation -------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (production defaults; a local .env relaxes them with DEBUG) ------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers probe /healthz over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Addresses (CIDR) whose /healthz answer lists each check with its error
# (hosts, ports); everyone else but logged-in staff gets the status only.
HEALTHZ_DETAIL_NETWORKS = env.list("HEALTHZ_DETAIL_NETWORKS", default=[])
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy on every response (django-csp): scripts and styles
# from our own origin, or inline only with the response's nonce; no plugins,
# no framing, forms and websockets (CSP3 'self' covers ws:/wss:) to us only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.constants.SELF],
        "script-src": [csp.constants.SELF, csp.constants.NONCE],
        "style-src": [csp.constants.SELF, csp.constants.NONCE],
        # The admin's icons are SVG files; its widgets draw some as data: URIs.
        "img-src": [csp.constants.SELF, "data:"],
        "connect-src": [csp.constants.SELF],
        "object-src": [csp.constants.NONE],
        "base-uri": [csp.constants.SELF],
        "form-action": [csp.constants.SELF],
        "frame-ancestors": [csp.constants.NONE],
    }
}
SESSION_COOKIE_HTTPONLY = True
# Debug pages and error reports hide secrets, passwords inside URLs included.
DEFAULT_EXCEPTION_REPORTER_FILTER = "companyos.foundation.errors.SecretsFilter"

# --- Analytics (docs/analytics.md) -----------------------------------------
# Time ranges longer than this read rollups instead of raw rows.
ANALYTICS_RAW_MAX_RANGE = timedelta(hours=env.int("ANALYTICS_RAW_MAX_RANGE_HOURS", default=6))
# Seconds a dashboard read stays cached (ingest invalidates sooner).
ANALYTICS_CACHE_TTL = env.int("ANALYTICS_CACHE_TTL", default=60)
# Raw events and metrics older than this are removed by `prune_analytics` (rollups stay).
ANALYTICS_RETENTION_DAYS = env.int("ANALYTICS_RETENTION_DAYS", default=90)

# --- Inbound webhooks (docs/webhooks.md) --------------------------------
# Larger bodies are answered 413 (GitHub caps payloads at 25 MB; ours are far smaller).
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=1024 * 1024)
# Delivery log rows older than this are removed by `prune_webhook_deliveries`.
WEBHOOK_DELIVERY_RETENTION_DAYS = env.int("WEBHOOK_DELIVERY_RETENTION_DAYS", default=30)
# Requests a minute taken from one address and by one webhook; more are
# answered 429 with Retry-After (companyos.foundation.ratelimit; 0 = unlimited).
# GitHub sends an organisation's deliveries from a few addresses, hence equal limits.
WEBHOOK_RATE_LIMIT_PER_ADDRESS = env.int("WEBHOOK_RATE_LIMIT_PER_ADDRESS", default=1200)
WEBHOOK_RATE_LIMIT_PER_ENDPOINT = env.int("WEBHOOK_RATE_LIMIT_PER_ENDPOINT", default=1200)

# --- HTTP API (docs/api.md) ----------------------------------------------------------
# Requests a minute per API token (or session user); more are answered 429 with
# Retry-After (companyos.foundation.ratelimit; 0 = unlimited).
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=600)
# Larger bodies are answered 413; a full ingest batch of API_INGEST_MAX_ROWS fits.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
API_INGEST_MAX_ROWS = env.int("API_INGEST_MAX_ROWS", default=5000)
# How long an Idempotency-Key's answer is remembered (Redis).
API_IDEMPOTENCY_SECONDS = env.int("API_IDEMPOTENCY_SECONDS", default=86400)
# Unrevoked tokens one user may hold.
API_MAX_TOKENS = env.int("API_MAX_TOKENS", default=100)

# --- Input bounds (docs/security.md) ----------------------------------------------
# JSON from outside (the admin's JSON fields; webhooks use WEBHOOK_MAX_BODY_BYTES)
# is refused above this size, and above this nesting depth: far below the ~1,000
# levels Python can load back, so whatever was stored can be shown again
# (companyos.foundation.jsonbounds).
JSON_MAX_BYTES = env.int("JSON_MAX_BYTES", default=256 * 1024)
JSON_MAX_DEPTH = env.int("JSON_MAX_DEPTH", default=64)
# Reverse proxies in front of the app that append the client's address to
# X-Forwarded-For; 0 trusts only the socket's address (companyos.foundation.network).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- Social platforms (docs/jobs.md) --------------------------------------
# The APIs scheduled posts are published through (tests point them at a local server).
SOCIAL_X_API_URL = env.str("SOCIAL_X_API_URL", default="https://api.x.com")
SOCIAL_LINKEDIN_API_URL = env.str("SOCIAL_LINKEDIN_API_URL", default="https://api.linkedin.com")
# The LinkedIn-Version header (YYYYMM) of the Posts API we speak.
SOCIAL_LINKEDIN_VERSION = env.str("SOCIAL_LINKEDIN_VERSION", default="202509")
SOCIAL_HTTP_TIMEOUT_SECONDS = env.float("SOCIAL_HTTP_TIMEOUT_SECONDS", default=10.0)
# A post whose platform keeps failing (5xx, unreachable) is retried after
# base * 2**(attempt-1) seconds, and marked failed after this many attempts.
SOCIAL_PUBLISH_MAX_ATTEMPTS = env.int("SOCIAL_PUBLISH_MAX_ATTEMPTS", default=5)
SOCIAL_PUBLISH_RETRY_BASE_SECONDS = env.float("SOCIAL_PUBLISH_RETRY_BASE_SECONDS", default=30.0)

# --- Staff console: change history (docs/admin.md) ---------------------
# Triggers record every change (companyos.foundation.console.models.Change); write
# requests attach who and from where (companyos.foundation.console.history).
# History rows older than this are removed by `prune_history`.
HISTORY_RETENTION_DAYS = env.int("HISTORY_RETENTION_DAYS", default=365)

# --- Logging ----------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Procrastinate's records of an expected failure (a failover, a provider down) become one line,
    # as our workers log them.
    "filters": {"expected_failures": {"()": "companyos.foundation.failures.ExpectedFailuresAsOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["expected_failures"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Every process that imports the jobs registers them and the periodic ones: noise outside the worker.
        "procrastinate.blueprints": {"level": "WARNING"},
        "procrastinate.periodic": {"level": "WARNING"},
    },
}

# The email's uniqueness is enforced case-insensitively by a UNIQUE index on
# lower(email) (core_user_email_ci_unique), which this check cannot see.
# (E003 with Django's default backend alone, W004 once AUTHENTICATION_BACKENDS lists django-axes too.)
SILENCED_SYSTEM_CHECKS = ["auth.E003", "auth.W004"]
