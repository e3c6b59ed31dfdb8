"""Running one dashboard page under Streamlit's AppTest, shared by the page tests."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
TIMEOUT_S = 120  # generous: the CI machine may be slow and shared


def run_page(page: str, query: dict[str, str] | None = None) -> AppTest:
    """``pages/<page>.py`` run once with ``query`` as its query parameters; no exception allowed."""
    app = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    for key, value in (query or {}).items():
        app.query_params[key] = value
    app.switch_page(f"pages/{page}.py")
    app.run()
    assert not app.exception, [exception.value for exception in app.exception]
    return app


def texts(app: AppTest, *kinds: str) -> str:
    """The values of every element of ``kinds`` (markdown, caption, …), one per line."""
    return "\n".join(str(element.value) for kind in kinds for element in getattr(app, kind))
