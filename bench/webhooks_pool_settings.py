"""Settings for the webhook benchmark's "pooled" Django server: psycopg's pool instead of per-thread connections.

Under ASGI every request runs in a fresh thread, so ``CONN_MAX_AGE`` > 0 keeps
one PostgreSQL connection per request open (and exhausts the server) while
``CONN_MAX_AGE=0`` connects on every request. Django 5.1+'s pool serves both.
"""

from companyos.settings import *  # noqa: F403
from companyos.settings import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": 2, "max_size": 16, "timeout": 10}
