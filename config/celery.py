"""The Celery application. Tasks are thin: they load an id and call a service (see jobs/)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("fleet_lockdown")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
