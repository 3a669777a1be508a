"""docker-compose.scale.yml, read (docker cannot run here): what it sets for the
processors is what config.py knows and accepts, both share one Redis and one bucket
under distinct INSTANCE_IDs, and every host:port they are given is a service of the
file that exposes that port."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from falconproc.config import Settings, known_variables, variable_warnings
from falconproc.wiring import check_settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.scale.yml"
# What a user exports before `docker compose up` (the file requires the token).
USER_ENV = {"PROCESSOR_AUTH_TOKEN": "0123456789abcdef" * 4}
# Settings every instance must share, and the one each must have of its own.
SHARED = ("STORAGE_BACKEND", "S3_ENDPOINT_URL", "S3_BUCKET", "S3_PREFIX", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY",
          "QUEUE_BACKEND", "REDIS_URL", "RATE_LIMIT_STORAGE_URI", "SCAN_MODE", "CLAMD_ADDRESS",
          "PROCESSOR_AUTH_TOKEN")
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$."""
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.groups()
        present, set_nonempty = name in env, bool(env.get(name))
        if op in (":-", "-"):
            return env[name] if (set_nonempty if op == ":-" else present) else arg
        if op in (":?", "?") and not (set_nonempty if op == ":?" else present):
            raise AssertionError(f"{name} is required: {arg}")
        return env.get(name, "")

    return _VARIABLE.sub(one, value)


def _resolved(node, env: dict[str, str]):
    if isinstance(node, str):
        return _interpolate(node, env)
    if isinstance(node, dict):
        return {key: _resolved(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolved(value, env) for value in node]
    return node


@pytest.fixture(scope="module")
def compose() -> dict:
    return _resolved(yaml.safe_load(COMPOSE.read_text()), USER_ENV)  # safe_load applies the `<<` merges


@pytest.fixture(scope="module")
def processors(compose) -> dict[str, dict[str, str]]:
    """Each processor service (built from this repository) and its environment."""
    found = {name: {key: str(value) for key, value in svc["environment"].items()}
             for name, svc in compose["services"].items() if "build" in svc}
    assert len(found) == 2, f"expected two processor instances, found {sorted(found)}"
    return found


def _exposed(compose, host: str) -> set[int]:
    assert host in compose["services"], f"{host} is referenced but is no service of the file"
    return {int(str(port).split("/")[0]) for port in compose["services"][host].get("expose", [])}


def test_the_token_is_required_not_defaulted():
    with pytest.raises(AssertionError, match="PROCESSOR_AUTH_TOKEN is required"):
        _resolved(yaml.safe_load(COMPOSE.read_text()), {})


def test_every_processor_variable_is_a_setting_config_accepts(processors):
    for name, env in processors.items():
        assert set(env) - set(known_variables()) == set(), name
        assert variable_warnings(env) == [], name
        settings = Settings.from_env(env)  # config's own parsers: raises SettingsError on a bad value
        check_settings(settings)  # backends, presets, job types: what start-up checks
        assert settings.storage_backend == "s3" and settings.queue_backend == "redis", name
        assert settings.host == "0.0.0.0" or "HOST" not in env, name  # the image sets 0.0.0.0


def test_the_processors_share_redis_and_the_bucket_under_distinct_instance_ids(processors):
    (a_name, a), (b_name, b) = processors.items()
    for variable in SHARED:
        assert a.get(variable) == b.get(variable), f"{variable} differs between {a_name} and {b_name}"
    assert a["REDIS_URL"] and a["S3_BUCKET"] and a["S3_ENDPOINT_URL"]
    ids = {Settings.from_env(env).instance_id for env in (a, b)}
    assert len(ids) == 2 and all("INSTANCE_ID" in env for env in (a, b)), "INSTANCE_ID must be set, and differ"
    # Redis keeps the queue and the rate-limit counts apart (different databases).
    assert a["REDIS_URL"] != a["RATE_LIMIT_STORAGE_URI"]


def test_every_host_and_port_the_processors_use_is_a_service_exposing_it(compose, processors):
    for name, env in processors.items():
        settings = Settings.from_env(env)
        targets = [urlsplit(settings.s3_endpoint_url), urlsplit(settings.redis_url),
                   urlsplit(settings.rate_limit_storage_uri)]
        addresses = [(url.hostname, url.port) for url in targets] + [settings.clamd_address]
        for host, port in addresses:
            assert port in _exposed(compose, host), f"{name} uses {host}:{port}, which {host} does not expose"
        needs = set(compose["services"][name]["depends_on"])
        assert {host for host, _ in addresses} <= needs, f"{name} does not wait for what it uses"
    # The bucket is created by s3-init against the same endpoint and name.
    init = "\n".join(compose["services"]["s3-init"]["entrypoint"])
    env = next(iter(processors.values()))
    assert env["S3_ENDPOINT_URL"] in init and f'Bucket="{env["S3_BUCKET"]}"' in init


def test_each_processor_has_its_own_port_and_scratch_volume_at_the_images_data_directory(compose, processors):
    published, volumes = set(), set()
    for name, env in processors.items():
        svc = compose["services"][name]
        port = Settings.from_env(env).port
        [mapping] = svc["ports"]
        host_port, container_port = mapping.rsplit(":", 2)[-2:]
        assert int(container_port) == port, f"{name} publishes {container_port} but listens on {port}"
        published.add(host_port)
        [volume] = svc["volumes"]
        source, target = volume.split(":")
        assert target == "/data" and source in compose["volumes"], name  # the Dockerfile's data paths
        volumes.add(source)
    assert len(published) == 2 and len(volumes) == 2
