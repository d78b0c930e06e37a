"""Foundations every layer uses: settings, failure classes, logs, metrics, bytes, images."""
