"""Checkpoints of BiModalSep (see hsm_bench.weights and systems/bimodalsep.py).

BiModalSep (Mahmud et al., ICLR 2024; microsoft/BiModalAudioSeparation, MIT) publishes one
separator file, ``model_weights.pth.tar``, on OneDrive only (README, "Pre-trained Models"):
a ``torch.save`` of ``{"state_dict": DDP(NetWrapper).state_dict(), "epoch": ...}``, so its
keys start with ``module.``. Its text conditioning is LAION-CLAP HTSAT-base
``music_audioset_epoch_15_esc_90.14.pt`` (the ``model_id=4`` file of the ``laion_clap``
loader), whose RoBERTa text branch needs the ``roberta-base`` config and tokenizer
(registered with the laion_clap family). No digest is published for either file; the first
download pins the sha256 in the lock file.
"""

from hsm_bench.weights import WeightSpec, register

register(
    WeightSpec(
        name="bimodalsep",
        description="BiModalSep separator (CLAP-conditioned attention U-Net), model_weights.pth.tar",
        source="https://buetedu-my.sharepoint.com/:u:/g/personal/tanvirmahmud_eee_buet_ac_bd/"
        "EXuaxZWHMM1KuQCI8hhnhBoBds45jbNNav5Wwh1mWObTfg?e=qhmMtO",
        filename="model_weights.pth.tar",
        licence="MIT",
        manual="OneDrive",
    )
)
register(
    WeightSpec(
        name="laion-clap-music-audioset",
        description="LAION-CLAP HTSAT-base + RoBERTa, music_audioset_epoch_15_esc_90.14.pt (BiModalSep's text encoder)",
        source="hf://lukewys/laion_clap/music_audioset_epoch_15_esc_90.14.pt",
        filename="music_audioset_epoch_15_esc_90.14.pt",
        licence="CC0-1.0",
    )
)
