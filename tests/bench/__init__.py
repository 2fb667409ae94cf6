"""`make bench`: the whole loop under open-loop load, next to a raw Kafka pipe's ceiling."""
