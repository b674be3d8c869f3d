"""Training HSM-TSS: data for training, the Lightning stages and the `hsm-bench train` entry point."""
