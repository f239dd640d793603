"""Reports are built in the background: their status, progress and failure, and the schedule flag.

Reports made before this migration were built in the request, so they are `ready`."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0002_compliancesnapshot_not_assessed"),
    ]

    operations = [
        migrations.AddField(
            model_name="report",
            name="status",
            field=models.CharField(
                choices=[("queued", "Queued"), ("building", "Building"), ("ready", "Ready"), ("failed", "Failed")],
                default="ready",
                max_length=10,
            ),
        ),
        migrations.AlterField(
            model_name="report",
            name="status",
            field=models.CharField(
                choices=[("queued", "Queued"), ("building", "Building"), ("ready", "Ready"), ("failed", "Failed")],
                default="queued",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="report",
            name="progress",
            field=models.PositiveSmallIntegerField(default=0, help_text="0-100 while building"),
        ),
        migrations.AddField(
            model_name="report",
            name="progress_note",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="report",
            name="error",
            field=models.CharField(blank=True, help_text="Why the build failed, in words", max_length=500),
        ),
        migrations.AddField(
            model_name="report",
            name="started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="report",
            name="finished_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="report",
            name="tz_name",
            field=models.CharField(default="UTC", help_text="The time zone the report shows times in", max_length=64),
        ),
        migrations.AddField(
            model_name="report",
            name="coverage_text",
            field=models.CharField(
                blank=True,
                help_text='The average with its coverage: "96.2 % over 16 of 20 servers; ..."',
                max_length=120,
            ),
        ),
        migrations.AddField(
            model_name="report",
            name="scheduled",
            field=models.BooleanField(default=False),
        ),
    ]
