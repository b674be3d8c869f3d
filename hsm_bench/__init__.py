"""hsm-bench: benchmark suite for text-queried audio source separation.

Importing this package loads no model and no optional dependency; systems, metrics and
test sets are reached by name through :mod:`hsm_bench.registry`.
"""

__version__ = "0.1.0"
