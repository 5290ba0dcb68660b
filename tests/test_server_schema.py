"""Property-based requests generated from the app's own OpenAPI document (schemathesis).

Bounded: a few examples per operation, so the whole file stays well under ~30 s. Checks that no
request makes the server fail (5xx) and that every response matches what the schema documents.
(pytest-9 note: schemathesis.pytest.from_fixture fails there, so the app is built at import.)
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from lipdub.server import ServerConfig, create_app  # noqa: E402

EXAMPLES = 12


KEY = "schema-test-key"


def _app():
    import tempfile
    from pathlib import Path

    from test_server_api import FAKES

    data_dir = Path(tempfile.mkdtemp(prefix="lipdub-schema-")) / "data"
    # No lifespan under schemathesis' ASGI transport, so no workers: jobs stay queued, which is
    # all these requests need. A small upload limit keeps generated bodies cheap.
    # With an API key, so the generated requests also probe the key check (wrong keys -> 401).
    return create_app(ServerConfig(data_dir=data_dir, isolation="thread", max_upload_bytes=2_000_000,
                                   api_key=KEY), jobs=FAKES)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_documented_responses(case):
    response = case.call(headers={"X-API-Key": KEY})
    # Every response: no 5xx, a documented status code, content type and body, a correct Allow
    # header, and wrong keys refused. Not "schema-valid data is accepted": the API checks what
    # an upload really contains, so random bytes that fit the schema are rightly refused (415).
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
