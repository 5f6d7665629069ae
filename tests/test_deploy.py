"""The deployment files: compose.yaml, deploy/Caddyfile, the Dockerfile and the systemd unit.

They are read as text and checked against the code and `.env.example`, so a renamed setting, a new
route or a careless edit shows up here rather than in production. `.ci/container-smoke` builds and
runs the image itself where a container engine works.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BOT_SERVICES = ("bot", "migrate")


def settings() -> set[str]:
    """Every setting an operator can set: the `NAME=` lines of .env.example."""
    names = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert "DATABASE_URL" in names and "LINK_SECRET" in names  # the file was read as meant
    return names


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def service(name: str) -> dict:
    return compose()["services"][name]


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # the "NAME=value" form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def depends_on(svc: dict) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


# --- compose.yaml ------------------------------------------------------------------------------


def test_compose_is_the_compose_specification_without_version():
    doc = compose()
    assert "version" not in doc
    assert {"postgres", "redis", "migrate", "bot", "proxy"} <= set(doc["services"])


@pytest.mark.parametrize("name", BOT_SERVICES)
def test_every_variable_set_for_the_bot_is_a_setting(name):
    svc = service(name)
    unknown = set(environment(svc)) - settings()
    assert not unknown, f"{name} sets variables that are no setting of .env.example: {sorted(unknown)}"
    assert svc.get("env_file") in (".env", [".env"]) or ".env" in str(svc.get("env_file"))


@pytest.mark.parametrize("name", BOT_SERVICES)
def test_the_bot_talks_to_the_compose_postgres_and_redis(name):
    env = environment(service(name))
    assert re.fullmatch(r"postgresql\+asyncpg://[^@/]+@postgres(:5432)?/\w+", env["DATABASE_URL"])
    assert re.fullmatch(r"redis://redis(:6379)?/\d+", env["REDIS_URL"])
    assert env["HTTP_HOST"] == "0.0.0.0"


def test_trusted_proxies_is_the_compose_network():
    subnets = [
        ipaddress.ip_network(pool["subnet"]) for pool in compose()["networks"]["default"]["ipam"]["config"]
    ]
    trusted = [
        ipaddress.ip_network(part.strip())
        for part in environment(service("bot"))["TRUSTED_PROXIES"].split(",")
    ]
    assert trusted, "TRUSTED_PROXIES is empty: every visitor of the status page would be the proxy"
    for network in trusted:
        inside = [s for s in subnets if network.network_address in s and network.broadcast_address in s]
        assert inside, f"TRUSTED_PROXIES {network} is not inside the compose network {subnets}"
    proxy_networks = service("proxy").get("networks") or ["default"]
    assert "default" in proxy_networks


def test_bot_has_two_replicas_and_no_published_ports():
    bot = service("bot")
    assert bot["deploy"]["replicas"] == 2
    assert not bot.get("ports"), "the bot is reached through the proxy only"
    assert "container_name" not in bot  # a fixed name allows one replica


def test_migrate_runs_once_before_the_bot():
    migrate = service("migrate")
    assert migrate["command"] in (["migrate"], "migrate")
    assert migrate.get("restart", "no") == "no"
    assert depends_on(migrate).get("postgres") == "service_healthy"
    deps = depends_on(service("bot"))
    assert deps.get("migrate") == "service_completed_successfully"
    assert deps.get("postgres") == "service_healthy"
    assert "redis" in deps
    assert service("bot").get("image") == migrate.get("image"), "migrate must run the bot's own image"


def test_postgres_keeps_its_data_in_a_named_volume_and_has_a_health_check():
    doc = compose()
    postgres = doc["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in postgres["volumes"] if isinstance(v, str)}
    source = mounts.get("/var/lib/postgresql/data")
    assert source and not source.startswith((".", "/")), "a named volume, not a bind mount"
    assert source in (doc.get("volumes") or {})
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_redis_and_proxy_images():
    assert service("redis")["image"].startswith("redis:7")
    proxy = service("proxy")
    assert proxy["image"].startswith("caddy:2")
    published = {str(p).split(":")[-1].split("/")[0] for p in proxy["ports"]}
    assert {"80", "443"} <= published
    assert any(v.startswith("./deploy/Caddyfile:") for v in proxy["volumes"])


def test_the_local_bot_api_is_optional_and_named_by_a_real_setting():
    api = service("telegram-bot-api")
    assert api["profiles"] == ["local-bot-api"]
    assert {"TELEGRAM_API_ID", "TELEGRAM_API_HASH"} <= set(environment(api))
    assert "TELEGRAM_API_URL" in settings()  # the setting that points the bot at it
    assert "TELEGRAM_API_URL" in (ROOT / "compose.yaml").read_text()


# --- deploy/Caddyfile --------------------------------------------------------------------------


def app_routes() -> set[str]:
    """The paths `isiqbot run` serves, read from the code: the web server, the app, the channels."""
    paths: set[str] = set()
    for path in [ROOT / "bot/web/server.py", ROOT / "bot/app.py", *ROOT.glob("bot/channels/*/*.py")]:
        text = path.read_text()
        paths |= set(re.findall(r"""\(\s*"(?:GET|POST|PUT|DELETE|PATCH|HEAD)",\s*"(/[^"]*)\"""", text))
        paths |= set(re.findall(r"""add_(?:get|post)\(\s*"(/[^"]*)\"""", text))
    assert {"/healthz", "/metrics", "/readyz", "/telegram/webhook", "/a/{token}"} <= paths, paths
    return paths


def caddy_site() -> tuple[dict[str, list[str]], list[tuple[str | None, str]]]:
    """The named path matchers and the top-level `handle` blocks (matcher, body) of the one site."""
    text = re.sub(r"(?m)^\s*#.*$", "", (ROOT / "deploy/Caddyfile").read_text())
    matchers = {name: line.split() for name, line in re.findall(r"(?m)^\s*@(\w+)\s+path\s+(.+)$", text)}
    handles: list[tuple[str | None, str]] = []
    for match in re.finditer(r"(?m)^\s*handle(?:\s+@(\w+))?\s*\{", text):
        depth, i = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        handles.append((match.group(1), text[match.end() : i - 1]))
    assert "reverse_proxy" not in re.sub(r"(?ms)^\s*handle.*", "", text), "reverse_proxy outside handle"
    return matchers, handles


def forwarded(path: str) -> bool:
    """Whether the Caddyfile sends `path` to the bot: the first handle whose matcher takes it."""
    matchers, handles = caddy_site()
    for name, body in handles:
        if name is None or any(fnmatchcase(path.lower(), pattern.lower()) for pattern in matchers[name]):
            return "reverse_proxy" in body
    return False


def example(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "A" * 28, path)


def test_the_proxy_forwards_every_route_but_metrics():
    for path in app_routes() - {"/metrics"}:
        assert forwarded(example(path)), f"{path} is not forwarded to the bot"
    for path in ("/metrics", "/metrics/", "/METRICS", "/", "/admin", "/healthz/x"):
        assert not forwarded(path), f"{path} reaches the bot"


def test_the_proxy_answers_404_on_metrics_and_balances_the_replicas():
    matchers, handles = caddy_site()
    metrics = [body for name, body in handles if name and "/metrics" in matchers[name]]
    assert metrics and re.search(r"respond\s.*\b404\b", metrics[0])
    proxies = [body for _, body in handles if "reverse_proxy" in body]
    assert len(proxies) == 1
    assert re.search(r"dynamic\s+a\s*\{[^}]*name\s+bot\b[^}]*port\s+8080", proxies[0], re.S), (
        "every replica's address, not the first one DNS gives"
    )


# --- Dockerfile and .dockerignore --------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continued lines joined and comments left out."""
    text = re.sub(r"(?m)^\s*#.*\n", "", (ROOT / "Dockerfile").read_text())
    text = re.sub(r"\\\n", " ", text)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()
    ]


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    start = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[start:]


def test_dockerfile_is_multi_stage_on_python_311_slim_bookworm():
    steps = dockerfile()
    froms = [args for op, args in steps if op == "FROM"]
    assert len(froms) >= 2
    args = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for op, a in steps if op == "ARG")))
    for base in froms:
        image = base.split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        if image not in {b.split()[-1] for b in froms if " AS " in b.upper()}:
            assert re.match(r"(docker\.io/library/)?python:3\.11-slim-bookworm\b", image), image


def test_dockerfile_installs_the_hash_locked_dependencies():
    runs = [args for op, args in dockerfile() if op == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    locked = [r for r in installs if "--require-hashes" in r and "-r requirements.lock" in r]
    assert locked, "the dependencies must come from requirements.lock with --require-hashes"
    project = [r for r in installs if re.search(r"--no-deps\s+\.(\s|$)", r)]
    assert project, "the project itself: pip install --no-deps ."
    assert installs.index(locked[0]) < installs.index(project[0])
    copies = [args for op, args in dockerfile() if op == "COPY"]
    assert any("requirements.lock" in c for c in copies)


def test_the_image_runs_isiqbot_as_a_non_root_user():
    stage = final_stage()
    users = [args.strip() for op, args in stage if op == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    entry = [json.loads(args) for op, args in stage if op == "ENTRYPOINT"]
    cmd = [json.loads(args) for op, args in stage if op == "CMD"]
    assert entry[-1] == ["isiqbot"] and cmd[-1] == ["run"]
    assert any(args.split()[0] == "8080" for op, args in stage if op == "EXPOSE")


def test_the_image_environment():
    env: dict[str, str] = {}
    for op, args in final_stage():
        if op == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    assert env.get("HTTP_HOST") == "0.0.0.0"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    ours = {name for name in env if not name.startswith(("PYTHON", "PIP_")) and name not in {"PATH", "LANG"}}
    assert ours <= settings(), f"the image sets what is no setting: {sorted(ours - settings())}"


def test_the_healthcheck_asks_readyz_with_urllib():
    checks = [args for op, args in final_stage() if op == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    check = checks[-1]
    assert "/readyz" in check and "127.0.0.1" in check
    assert "urllib" in check and "curl" not in check and "wget" not in check


def dockerignored(path: str) -> bool:
    """Whether the build context leaves `path` out, by Docker's rules: the last matching line wins,
    and a line matches a path or any of its parent folders."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    ignored = False
    for line in filter(lambda s: s and not s.startswith("#"), lines):
        negate, pattern = line.startswith("!"), line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def test_the_build_context_has_the_sources_and_no_secrets():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    needed = ["requirements.lock", "pyproject.toml", pyproject["project"]["readme"]]
    needed += [f"{package}/__init__.py" for package in packages]
    needed += [
        "locales/az/LC_MESSAGES/messages.po",
        "storage/migrations/env.py",
        "bot/templates/status.html.j2",
    ]
    for path in needed:
        assert not dockerignored(path), f"{path} is left out of the build context"
    for path in (
        ".env",
        ".git/config",
        ".venv/bin/python",
        "data/isiqbot.db",
        "tests/test_deploy.py",
        "bot/__pycache__/app.cpython-311.pyc",
        "isiqbot.egg-info/PKG-INFO",
    ):
        assert dockerignored(path), f"{path} goes into the build context"


# --- deploy/isiqbot.service --------------------------------------------------------------------


def unit() -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for line in (ROOT / "deploy/isiqbot.service").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            options.setdefault(key.strip(), []).append(value.strip())
    return options


def seconds(value: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value))


def test_the_unit_migrates_before_it_runs():
    options = unit()
    pre, start = shlex.split(options["ExecStartPre"][0]), shlex.split(options["ExecStart"][0])
    assert pre[1:] == ["migrate"] and start[1:] == ["run"]
    assert pre[0] == start[0] and pre[0].endswith("/isiqbot") and pre[0].startswith("/")
    assert options["EnvironmentFile"] == ["/etc/isiqbot/env"]
    assert options["Restart"] == ["on-failure"]


def test_the_unit_runs_as_its_own_user_with_hardening():
    options = unit()
    assert options["User"][0] not in {"root", "0"}
    assert options["NoNewPrivileges"] == ["yes"]
    assert options["ProtectSystem"] == ["strict"]
    writable = " ".join(options.get("ReadWritePaths", []))
    assert options["WorkingDirectory"][0] in writable.split(), "the SQLite folder (./data) must be writable"


def test_the_unit_stops_after_the_drain():
    options = unit()
    assert options["KillSignal"] == ["SIGTERM"]
    assert seconds(options["TimeoutStopSec"][0]) > 10, "the service drains for up to 10 s at SIGTERM"


def test_the_unit_names_only_settings_that_exist():
    """In Environment= lines and in the comments, which tell the operator what to set."""
    lines = (ROOT / "deploy/isiqbot.service").read_text().splitlines()
    comments = "\n".join(line for line in lines if line.lstrip().startswith("#"))
    named = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", comments))
    for value in unit().get("Environment", []):
        named |= {assignment.split("=", 1)[0] for assignment in shlex.split(value)}
    assert named - settings() == set(), f"no such setting: {sorted(named - settings())}"
