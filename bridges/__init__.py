"""North: one module per consumer (MQTT, OPC UA server, upstream OCPP relay) and the durable outbox they share.
Bridges read the process image and its feeds; they act only through the one command door."""
