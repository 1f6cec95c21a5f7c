"""HTTP API blueprints: parse, call a service, shape the response."""
