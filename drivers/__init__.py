"""South: one module (or package) per protocol. A driver owns its connections and turns what devices say into
points and records; it knows its protocol and the core model, nothing north."""
