"""Each process's last report, for the admin's status page (`reporter.py`).

One row per running process (web or listener), rewritten every
STATUS_REPORT_SECONDS: in the database because every process can reach it
(with or without Redis), and the page needs all of them.
"""

from django.db import models


class ProcessReport(models.Model):
    name = models.CharField(max_length=200, unique=True, help_text="host:pid")
    kind = models.CharField(max_length=20, help_text="web or listener")
    started_at = models.DateTimeField()
    reported_at = models.DateTimeField(db_index=True)
    figures = models.JSONField(default=dict)

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"
