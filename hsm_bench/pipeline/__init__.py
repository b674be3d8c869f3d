"""The three stages of a run (separate, score, aggregate) and their orchestration."""
