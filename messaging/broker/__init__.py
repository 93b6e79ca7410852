"""Broker: wake-ups between server processes. See ``base.Broker`` for its guarantees."""

from messaging.broker.base import Broker, MessageHandler, ReconnectHandler, create_broker

__all__ = ["Broker", "MessageHandler", "ReconnectHandler", "create_broker"]
