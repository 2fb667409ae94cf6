"""A real Apache Kafka broker (KRaft, combined broker+controller) run from Maven Central jars.

Used by `make kafka-up`, the demo, the chaos run and the test fixture on machines
without a Docker engine. Nothing here runs at import time.
"""
