"""Run folders, crash-safe JSONL, provenance and caches."""
