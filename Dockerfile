# The CompanyOS application image (ASGI: HTTP and websockets via uvicorn).
# docker-compose.yml builds it and supplies the configuration (.env.example);
# the same image runs the background worker (`python manage.py run_worker`)
# and the scheduler (`python manage.py run_scheduler`), see docs/jobs.md.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Static files are collected at build time; settings need values to import,
# none of which end up in the image or reach a server.
RUN DEBUG=False \
    SECRET_KEY=collectstatic-only \
    DATABASE_URL=postgres://unused@localhost/unused \
    REDIS_URL=redis://localhost:6379/0 \
    FIELD_ENCRYPTION_KEYS="$(python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')" \
    ENV_FILE=/dev/null \
    python manage.py collectstatic --noinput

RUN useradd --system --no-create-home --uid 10001 companyos
USER companyos

EXPOSE 8000
# One uvicorn worker per core (uvicorn reads WEB_CONCURRENCY): the pub/sub
# channel layer fans events out per process. websockets-sansio measured
# faster than the default implementation (docs/realtime.md). The websocket
# heartbeat closes dead peers within 25 s (dev.py's WS_HEARTBEAT_ARGS).
ENV WEB_CONCURRENCY=2
CMD ["uvicorn", "companyos.config.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--lifespan", "off", "--proxy-headers", "--ws", "websockets-sansio", "--ws-ping-interval", "15", "--ws-ping-timeout", "10"]
