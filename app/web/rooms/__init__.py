"""Live rooms: WebSocket connections and the per-process fan-out from Redis."""
