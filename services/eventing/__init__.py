"""Shared event plumbing: the Avro contract (catalogue, codec, envelope), topics, logging setup."""
