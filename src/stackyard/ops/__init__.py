"""Day 2 operations beside the delivery road: the platform's event log, webhooks, metrics,
SLOs and the ticker that runs the periodic ones in the workers (DESIGN §10)."""
