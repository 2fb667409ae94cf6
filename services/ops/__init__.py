"""The ops service: the operators' dashboard (`GET /dashboard`), reading every service's
/metrics, the coordinator's sagas, the risk review queue and Kafka's offsets."""
