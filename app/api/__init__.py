"""HTTP surfaces: auth, the webhook, /v1/captions, health and metrics, the page and the gallery."""
