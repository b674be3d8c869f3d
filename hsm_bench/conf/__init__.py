"""Hydra configuration tree of `hsm-bench run` (a package so Hydra can find it when installed)."""
