# One image for every process of the live quiz: web (default), relay, worker and migrations.
#   docker build -t livequiz .
#   docker run livequiz                               # web (gunicorn)
#   docker run livequiz python -m outbox_relay        # relay
#   docker run livequiz python -m cache_worker        # worker
#   docker run livequiz alembic upgrade head          # migrations
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WEB_HOST=0.0.0.0 \
    WEB_PORT=8000

WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml setup.cfg ./
RUN python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); \
print('\n'.join(l.strip() for l in c['options']['install_requires'].splitlines() if l.strip()))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin quiz
USER quiz

EXPOSE 8000
# gunicorn.conf.py, when present, holds the web server settings; otherwise bind WEB_HOST:WEB_PORT.
CMD ["sh", "-c", "if [ -f gunicorn.conf.py ]; then exec gunicorn -c gunicorn.conf.py 'app:create_app()'; else exec gunicorn -b \"$WEB_HOST:$WEB_PORT\" -w \"${WEB_WORKERS:-2}\" --threads \"${WEB_THREADS:-64}\" 'app:create_app()'; fi"]
