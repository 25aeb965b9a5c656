"""fedsec coordinator: the model team's ServerApp, aggregation strategy, checkpoints and reports."""
