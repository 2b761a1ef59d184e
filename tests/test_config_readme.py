"""The README's configuration table lists exactly the environment variables the
settings read: none missing from it, none it names that nothing reads.

The variables read are found in realtime_sync/settings.py itself (its `env` calls,
parsed with `ast`), and checked against what loading the settings really reads.
"""

import ast
import importlib.util
import re
from pathlib import Path

import environ

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "realtime_sync" / "settings.py"
README = ROOT / "README.md"

# django-environ's readers that take the variable's name from a default when called without one.
DEFAULT_NAMES = {
    "db_url": environ.Env.DEFAULT_DATABASE_ENV,
    "db": environ.Env.DEFAULT_DATABASE_ENV,
    "cache_url": environ.Env.DEFAULT_CACHE_ENV,
    "cache": environ.Env.DEFAULT_CACHE_ENV,
    "email_url": environ.Env.DEFAULT_EMAIL_ENV,
    "email": environ.Env.DEFAULT_EMAIL_ENV,
    "search_url": environ.Env.DEFAULT_SEARCH_ENV,
    "channels_url": environ.Env.DEFAULT_CHANNELS_ENV,
    "channels": environ.Env.DEFAULT_CHANNELS_ENV,
}


def _settings_tree() -> ast.Module:
    return ast.parse(SETTINGS.read_text(), filename=str(SETTINGS))


def variables_read_by_settings() -> set[str]:
    """The names passed to `env(...)` and `env.<reader>(...)` in the settings module."""
    names = set()
    for node in ast.walk(_settings_tree()):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "env":
            reader = None
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env":
            reader = func.attr
        else:
            continue
        name = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "var"), None)
        if name is None and reader in DEFAULT_NAMES:
            names.add(DEFAULT_NAMES[reader])
            continue
        assert isinstance(name, ast.Constant) and isinstance(name.value, str), (
            f"settings.py line {node.lineno}: name the variable with a string literal, so this test can see it"
        )
        names.add(name.value)
    return names


def variables_in_readme_table() -> list[str]:
    """The names in the first column of the table under "## Configuration"."""
    text = README.read_text()
    assert "\n## Configuration\n" in text, "the README has no Configuration section"
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) > 2, "the Configuration section has no table"
    header, separator, *body = rows
    assert header.split("|")[1].strip() == "variable", header
    assert set(separator) <= set("|-: "), separator
    names = []
    for row in body:
        found = re.findall(r"`([^`]+)`", row.split("|")[1])
        assert found, f"a row of the configuration table names no variable: {row}"
        names.extend(found)
    return names


def test_readme_table_lists_exactly_the_variables_settings_reads():
    read = variables_read_by_settings()
    listed = variables_in_readme_table()

    assert not read - set(listed), f"read in settings.py, missing from the README's table: {sorted(read - set(listed))}"
    assert not set(listed) - read, f"in the README's table, not read by settings.py: {sorted(set(listed) - read)}"
    assert len(listed) == len(set(listed)), "a variable appears twice in the README's table"


def test_settings_read_the_environment_only_through_env():
    """A read that bypasses `env` would be invisible to the check above."""
    bypasses = []
    for node in ast.walk(_settings_tree()):
        is_os = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
        if is_os and node.attr in {"environ", "getenv"}:
            bypasses.append(f"line {node.lineno}: os.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            bypasses += [f"line {node.lineno}: from os import {a.name}" for a in node.names if a.name != "path"]
    assert not bypasses, bypasses


class _RecordingEnviron(dict):
    def __init__(self, values):
        super().__init__(values)
        self.read = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def test_the_parsed_names_are_what_loading_the_settings_reads(monkeypatch):
    """Load the settings with every optional branch taken (production, PostgreSQL,
    Redis through Sentinel) and record what they read: the same set as parsed."""
    recording = _RecordingEnviron(
        {
            "SECRET_KEY": "x" * 60,
            "DATABASE_URL": "postgres://app@db.internal:5432/chat",
            "REDIS_URL": "redis://cache.internal:6379/0",
            "REDIS_SENTINELS": "10.0.0.21:26379,10.0.0.22:26379",
        }
    )
    monkeypatch.setattr(environ.Env, "ENVIRON", recording)
    spec = importlib.util.spec_from_file_location("settings_as_loaded", SETTINGS)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))

    assert recording.read == variables_read_by_settings()
