"""HSM-TSS (arXiv 2505.21025) re-implemented from the paper: see docs/hsm_tss.md."""
