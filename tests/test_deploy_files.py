"""docker-compose.yml, the Dockerfile, the Kafka version: parsed, checked for what they promise."""

# No Docker daemon and no `docker compose` plugin on these machines, so `docker compose
# config` cannot run here: the compose file is parsed as YAML and its structure checked.

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import yaml

from funnelhouse.config import REPO_ROOT
from funnelhouse.queue.kafka_broker import KAFKA_VERSION

ROLES = ("collector", "loader", "serve")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def test_every_role_waits_for_the_one_shot_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["funnelhouse", "migrate"]
    assert migrate.get("restart", "no") == "no"
    assert migrate["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for role in ROLES:
        depends = services[role]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, role
        assert depends["kafka"]["condition"] == "service_healthy", role
        assert services[role]["command"][:2] == ["funnelhouse", role], role
    assert services["serve"]["command"][:2] == ["funnelhouse", "serve"]


def test_services_reference_only_what_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert set(service.get("depends_on") or {}) <= set(services), name
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            assert source.startswith((".", "/")) or source in volumes, (name, mount)
        assert "image" in service or service.get("build") == ".", name
    # Published ports do not collide.
    published = [p.split(":")[0] for s in services.values() for p in s.get("ports") or []]
    assert len(published) == len(set(published))
    # Every role shares the same settings block (warehouse URL, Kafka, keys).
    for role in ("migrate", *ROLES):
        env = services[role]["environment"]
        assert env["FUNNELHOUSE_CLICKHOUSE_URL"].endswith("@clickhouse:8123/funnelhouse")
        assert env["FUNNELHOUSE_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_one_kafka_version_everywhere(compose: dict[str, Any]) -> None:
    image = compose["services"]["kafka"]["image"]
    assert image == f"apache/kafka:{KAFKA_VERSION}"
    pom = ET.parse(REPO_ROOT / "kafka" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    assert pom.findtext("m:properties/m:kafka.version", namespaces=ns) == KAFKA_VERSION
    # Wherever the README names a full Kafka version, it is this one.
    readme = (REPO_ROOT / "README.md").read_text()
    named = set(re.findall(r"Kafka (\d+\.\d+\.\d+)", readme))
    assert named <= {KAFKA_VERSION}, named


def test_image_installs_the_package_not_editable_with_a_built_console() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, re.M | re.I)
    assert stages[0][0].startswith("node:") and stages[0][1] == "console"
    assert "npm --prefix console run build" in text
    assert "COPY --from=console /src/funnelhouse/console_dist funnelhouse/console_dist" in text
    assert not re.search(r"pip install[^\n]*\s-e\s", text)  # no editable install
    assert "pip install --no-cache-dir /wheels/*.whl" in text
    # The runtime stage copies no sources: only the wheel.
    runtime = text[text.rindex("\nFROM "):]
    assert re.findall(r"^COPY .*", runtime, re.M) == ["COPY --from=wheel /wheels /wheels"]
    # The console stage copies every input its build reads.
    for path in ("console/package.json", "console/package-lock.json", "console/tsconfig.json",
                 "console/scripts", "console/src"):
        copies = [line.split()[1:-1] for line in re.findall(r"^COPY [^-].*", text, re.M)]
        assert (REPO_ROOT / path).exists() and any(path in c for c in copies), path
