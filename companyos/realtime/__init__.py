"""The websocket side of real-time events: authentication, the consumer, routing."""
