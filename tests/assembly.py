"""The service as `isiqbot run` builds it (`bot.app.build`), for tests that drive it in-process.

Settings come from an env file, as an operator's `.env` does; the developer's own settings never
reach the tests (conftest clears them).
"""

from __future__ import annotations

from pathlib import Path

from limits import RateLimitItemPerSecond

from bot.app import Pace
from bot.channels.telegram.limits import Limits
from bot.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DEPARTMENTS = (ROOT / "departments.example.toml").read_text(encoding="utf-8")
LINK_SECRET = "test-link-secret-0123456789abcdefghijklmnop"
# One person's answers may go faster than the platforms' 1 a second here, so the flows run quickly;
# the limits themselves are tested on their own, with their real values.
FAST = Pace(
    telegram=Limits(private=RateLimitItemPerSecond(50), group=RateLimitItemPerSecond(50)),
    whatsapp_mps=500,
    whatsapp_per_user=100,
)


def settings_in(folder: Path, departments: str | None = None, **values: object) -> Settings:
    """Settings read from `folder/.env` holding `values` (and DEPARTMENTS_FILE for `departments`)."""
    folder.mkdir(parents=True, exist_ok=True)
    if departments is not None:
        path = folder / "departments.toml"
        path.write_text(departments, encoding="utf-8")
        values["DEPARTMENTS_FILE"] = str(path)
    values.setdefault("LINK_SECRET", LINK_SECRET)
    env_file = folder / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items() if v is not None), encoding="utf-8")
    return Settings(env_file=env_file)
