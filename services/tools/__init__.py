"""What operates or exercises Boomerang rather than runs it: the on-call commands (oncall/,
shipped with the runtime), and, for a checkout only, the partner doubles, the local Kafka
broker and the local stack (demo, chaos, the sample round trip)."""
