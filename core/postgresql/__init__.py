"""Django's PostgreSQL backend with the pool check of core/db_pool.py (ENGINE "core.postgresql")."""
