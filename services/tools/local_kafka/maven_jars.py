"""Kafka's jars, resolved once from Maven Central into the cache (deploy/kafka/pom.xml)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from services.tools.local_kafka.cluster_settings import POM, BrokerError, LocalKafkaSettings


def install_jars(settings: LocalKafkaSettings) -> Path:
    """Resolve kafka_2.13 and its runtime dependencies from Maven Central, once."""
    marker = settings.libs_dir / f"kafka_2.13-{settings.version}.jar"
    if marker.exists():
        return settings.libs_dir
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is not on PATH; it is needed once to fetch Kafka's jars")
    staging = settings.libs_dir.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    settings.log(f"fetching Apache Kafka {settings.version} jars from Maven Central ...")
    started = time.monotonic()
    cmd = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-Dkafka.version={settings.version}",
        f"-DoutputDirectory={staging}",
        f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not (staging / marker.name).exists():
        raise BrokerError(f"mvn failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    shutil.rmtree(settings.libs_dir, ignore_errors=True)
    staging.rename(settings.libs_dir)
    jars = len(list(settings.libs_dir.glob("*.jar")))
    settings.log(f"  {jars} jars in {settings.libs_dir} ({time.monotonic() - started:.1f}s)")
    return settings.libs_dir
