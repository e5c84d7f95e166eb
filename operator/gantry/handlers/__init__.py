"""Kopf handlers: thin translations of watch events and timers into reconciler calls."""
