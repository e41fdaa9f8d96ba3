"""Use cases: each takes its ports (storage, PayMob, clock) and applies the state machine."""
