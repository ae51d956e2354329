"""Security tests against the reference national-broker config (config/mosquitto/)."""
