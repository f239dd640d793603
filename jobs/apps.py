from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Jobs: discover / verify / harden / rollback runs per host, their logs, results and changes."""

    name = "jobs"
    verbose_name = "Jobs"
