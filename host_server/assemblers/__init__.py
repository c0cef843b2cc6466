"""Per-method assemblers: turn a device's frames into complete samples for the tails."""
