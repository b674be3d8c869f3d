"""Reports: paper-style tables beside the published numbers (``reports/published/``)."""
