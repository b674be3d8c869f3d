"""Checkpoints of the audiosep family (see hsm_bench.weights).

AudioSep (Audio-AGI/AudioSep, code MIT): ``audiosep_base_4M_steps.ckpt``, a PyTorch Lightning
checkpoint (``state_dict`` with ``ss_model.*`` and ``query_encoder.model.*`` keys), published
only in the ``checkpoint/`` folder of the Hugging Face *Space* ``Audio-AGI/AudioSep`` (README
L24; ``hf://spaces/...`` sources are fetched with ``repo_type="space"``). Its query encoder also
needs the LAION-CLAP file ``music_speech_audioset_epoch_15_esc_89.98.pt`` (the same file as
``lukewys/laion_clap``'s, registered by the laion_clap family) and the ``roberta-base`` config and
tokenizer.

The DCASE 2024 task 9 baseline (Audio-AGI/dcase2024_task9_baseline, a fork without a licence
file) is the file ``audiosep,baseline-16k,step=200000.ckpt`` of Zenodo record 10887460; it is
stored here as ``audiosep_baseline-16k_step200000.ckpt`` because commas and '=' do not survive
command-line overrides. Neither host's sha256 is known here (Zenodo publishes md5 on the record
page): the first download pins the sha256 in the lock file.
"""

from hsm_bench.weights import WeightSpec, register

register(
    WeightSpec(
        name="audiosep-base-4m",
        description="AudioSep ResUNet30 + CLAP query encoder, 32 kHz, 4M steps (audiosep_base_4M_steps.ckpt, Lightning)",
        source="hf://spaces/Audio-AGI/AudioSep/checkpoint/audiosep_base_4M_steps.ckpt",
        filename="audiosep_base_4M_steps.ckpt",
        licence="MIT (code repository; the Space states no other licence)",
    )
)
register(
    WeightSpec(
        name="audiosep-dcase2024-baseline-16k",
        description="DCASE 2024 task 9 baseline: AudioSep at 16 kHz, 200k steps (audiosep,baseline-16k,step=200000.ckpt)",
        source="https://zenodo.org/records/10887460/files/audiosep%2Cbaseline-16k%2Cstep%3D200000.ckpt",
        filename="audiosep_baseline-16k_step200000.ckpt",
        licence="not stated in the code repository; see Zenodo record 10887460",
    )
)
