# One image for every process of the live quiz: web (default), relay, worker, score ingest and migrations.
#   docker build -t livequiz .
#   docker run -e SECRET_KEY=... livequiz                # web (gunicorn)
#   docker run livequiz python -m outbox_relay           # relay
#   docker run livequiz python -m cache_worker           # worker
#   docker run livequiz python -m score_ingest           # score ingest
#   docker run livequiz alembic upgrade head             # migrations
# GraphiQL and React, which the web process serves at GET /graphql (app/web/playground.py), and uPlot,
# the charts of its /ops dashboard (app/web/ops_dashboard.py), from npm's registry by the lock, as
# `scripts/deps.sh` installs them; only the files they serve go on.
FROM node:20-bookworm-slim AS web-assets
WORKDIR /assets
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WEB_HOST=0.0.0.0 \
    WEB_PORT=8000

WORKDIR /app

# Dependencies first, so code changes do not reinstall them: exactly the pinned, hash-checked
# versions of requirements.lock, the same lock `make up` and CI build their virtualenv from.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY . .
COPY --from=web-assets /assets/node_modules/react ./node_modules/react
COPY --from=web-assets /assets/node_modules/react-dom ./node_modules/react-dom
COPY --from=web-assets /assets/node_modules/graphiql/package.json /assets/node_modules/graphiql/graphiql.min.js \
     /assets/node_modules/graphiql/graphiql.min.css ./node_modules/graphiql/
COPY --from=web-assets /assets/node_modules/uplot/package.json ./node_modules/uplot/
COPY --from=web-assets /assets/node_modules/uplot/dist/uPlot.iife.min.js /assets/node_modules/uplot/dist/uPlot.min.css \
     ./node_modules/uplot/dist/
RUN pip install --no-deps --no-build-isolation . \
    && pip check \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin quiz
USER quiz

EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"]
