"""The station against brokers other than mosquitto: RabbitMQ (MQTT plugin) and amqtt."""
