# Production image: gunicorn serves the web app; the same image runs the Celery worker and beat.
FROM python:3.11-slim
# The image is production: it refuses to start without DJANGO_SECRET_KEY and FLEET_ENCRYPTION_KEYS.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 FLEET_VAR_DIR=/var/lib/fleet FLEET_ENV=production
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY config ./config
COPY servers ./servers
COPY lockdown ./lockdown
COPY jobs ./jobs
COPY remote ./remote
COPY winlab ./winlab
COPY templates ./templates
COPY static ./static
COPY manage.py ./
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --system --home /var/lib/fleet fleet && mkdir -p /var/lib/fleet && chown fleet /var/lib/fleet
USER fleet
RUN FLEET_ENV=development python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
