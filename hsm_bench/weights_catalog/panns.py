"""Checkpoints of the PANNs family (see hsm_bench.weights).

PANNs (Kong et al., qiuqiangkong/audioset_tagging_cnn), released on Zenodo under CC BY 4.0
as ``{"model": state_dict, ...}`` files. Zenodo publishes md5 checksums, not sha256: the
first download pins the sha256 in the lock file. audioldm-eval 0.0.3 computes KL with the
16 kHz checkpoint at 16 kHz and the 32 kHz checkpoint at 32 kHz.
"""

from hsm_bench.weights import WeightSpec, register

register(
    WeightSpec(
        name="panns-cnn14-16k",
        description="PANNs Cnn14 trained on AudioSet at 16 kHz (Cnn14_16k_mAP=0.438.pth)",
        source="https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth",
        filename="Cnn14_16k_mAP=0.438.pth",
        licence="CC-BY-4.0",
    )
)
register(
    WeightSpec(
        name="panns-cnn14-32k",
        description="PANNs Cnn14 trained on AudioSet at 32 kHz (Cnn14_mAP=0.431.pth)",
        source="https://zenodo.org/record/3576403/files/Cnn14_mAP%3D0.431.pth",
        filename="Cnn14_mAP=0.431.pth",
        licence="CC-BY-4.0",
    )
)
