"""Status and alerts over MQTT: a publisher the daemons use, and the topic scheme.

The key path never depends on the broker: daemons only mark state dirty or append an
event (both O(1) and synchronous); a background task publishes, coalescing state per
entity, and reconnects with backoff when the broker goes away.
"""

from __future__ import annotations

from .publisher import EventPublisher, parse_mqtt_url
from .topics import ALL, Topic, daemon_availability, drive_event, drive_state, parse_topic, token_event, token_state

__all__ = ["EventPublisher", "parse_mqtt_url", "ALL", "Topic", "daemon_availability", "drive_event", "drive_state",
           "parse_topic", "token_event", "token_state"]
