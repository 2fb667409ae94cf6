"""The batched event engine every service runs on: aiokafka consume → pure handler → produce,
state checkpointed to compacted changelogs, offsets committed behind acknowledged effects."""
