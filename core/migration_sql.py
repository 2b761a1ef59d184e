"""What the migrations with SQL of their own share."""


def on_postgresql(sql):
    """A RunPython callable that runs `sql` on PostgreSQL and does nothing
    elsewhere (the app there has no plain-SQL writers to follow, and sends
    through the ORM)."""

    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)  # no placeholders: % is PL/pgSQL's

    return run
