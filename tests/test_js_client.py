"""The JavaScript client's own tests (tests/js/*.test.mjs, Node's test runner),
run from here so that the README's test command and CI run them too.

Each test file starts its own Daphne on a fresh SQLite database with the
in-memory layer (tests/js/support.mjs), whatever DATABASE_URL says: they test
the client against the protocol, not the services. Run them alone with
`node --experimental-websocket --test tests/js/` (Node 22+: without the flag).
Skipped without Node.js 20+; a failure with REQUIRE_SERVICES=1 (CI).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import node_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.node
@pytest.mark.timeout(600)
def test_the_js_client_passes_its_node_tests():
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "js").glob("*.test.mjs"))
    assert files, "no tests/js/*.test.mjs"
    result = subprocess.run(
        [*node_command(), "--test", "--test-reporter=spec", *files],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=540,
    )
    output = result.stdout + result.stderr
    sys.stdout.write(output)
    assert result.returncode == 0, failure_report(output)
    assert "# fail 0" in output or "ℹ fail 0" in output, failure_report(output)


def failure_report(output: str, size: int = 20000) -> str:
    """The end of the output, and the servers' logs and stacks that a failed
    test file prints (tests/js/support.mjs) if they are not in that end."""
    tail = output[-size:]
    logs_at = output.find("--- server log")
    if logs_at < 0 or logs_at >= len(output) - size:
        return tail
    return tail + "\n" + output[logs_at : logs_at + size]
