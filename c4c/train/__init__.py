"""Training: the shared loop, optimiser and schedules, distributed helpers, checkpoints."""
