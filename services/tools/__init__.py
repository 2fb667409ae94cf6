"""What operates or exercises Boomerang, not what runs in production: the on-call commands,
the partner doubles, the local Kafka broker and the local stack (demo, chaos)."""
