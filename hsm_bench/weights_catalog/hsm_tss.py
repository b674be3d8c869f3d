"""Checkpoints of HSM-TSS and of the public parts it is built from (systems/hsm_tss/).

HSM-TSS (arXiv 2505.21025) publishes no code and no weights, so ``hsm-tss`` and
``hsm-tss-single`` have no source: they are checkpoints in hsm-bench's own format (a folder
holding ``config.json`` and ``model.safetensors``, systems/hsm_tss/checkpoint.py) that
``hsm-bench train`` writes, or that ``hsm-bench convert-weights`` starts from the
official AudioMAE and TF-Codec files. Its public parts:

* FLAN-T5-base (the frozen text encoder, paper section IV-C): config, SentencePiece tokenizer
  and weights from the Hub repository ``google/flan-t5-base`` (Apache-2.0).
* AudioMAE ViT-B/16 pre-trained on AudioSet-2M (facebookresearch/AudioMAE, CC BY-NC 4.0):
  the authors' file is on Google Drive (README "Checkpoints", id
  1ni_DV4dRf7GxM8k-Eirx71WP9Gg89wwu); the encoder alone is on the Hub as the timm port
  ``gaunernst/vit_base_patch16_1024_128.audiomae_as2m`` (same keys).
* TF-Codec 6 kbps (microsoft/TF-Codec, MIT): ``tfcodec_6k_514000.ckpt`` from the OneDrive
  folder linked in the README ("Pretrained models"); trained on speech only.
* EnCodec 24 kHz and DAC 16 kHz (transformers folders), alternative token spaces for the
  acoustic decoder.
"""

from hsm_bench.weights import WeightSpec, register

_T5_FILES = ["config.json", "model.safetensors", "spiece.model", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json"]  # fmt: skip
_NO_PUBLIC = ("no public HSM-TSS checkpoint exists (the paper released no weights): train one with `hsm-bench train` "
              "(a small CPU one: `hsm-bench train {system} preset=demo out=DIR`, then --weights {name}=DIR/model-fp16) "
              "or pass a checkpoint folder with --weights {name}=PATH")  # fmt: skip

for _name, _what in (("hsm-tss", "HSM-TSS, hierarchical (global -> local -> acoustic)"),
                     ("hsm-tss-single", "HSM-TSS single-stage variant (local -> acoustic)")):  # fmt: skip
    _system = _name.replace("-", "_")
    register(
        WeightSpec(
            name=_name,
            description=f"{_what}, hsm-bench checkpoint folder (config.json + model.safetensors)",
            source="none (no public release)",
            filename=_name,
            licence="set by whoever trained it",
            unavailable=_NO_PUBLIC.format(name=_name, system=_system),
        )
    )
register(
    WeightSpec(
        name="flan-t5-base",
        description="FLAN-T5-base (transformers T5; HSM-TSS's frozen text encoder and task-token vocabulary)",
        source="hf://google/flan-t5-base",
        filename="flan-t5-base",
        licence="Apache-2.0",
        extra={"allow_patterns": _T5_FILES},
    )
)
register(
    WeightSpec(
        name="audiomae-as2m",
        description="AudioMAE ViT-B/16 encoder pre-trained on AudioSet-2M (timm port of the official weights; "
        "the authors' pretrain.pth from Google Drive, with its decoder, is accepted too)",
        source="hf://gaunernst/vit_base_patch16_1024_128.audiomae_as2m/model.safetensors",
        filename="model.safetensors",
        licence="CC BY-NC 4.0 (facebookresearch/AudioMAE LICENSE)",
    )
)
register(
    WeightSpec(
        name="tfcodec-6k",
        description="TF-Codec 6 kbps generator, tfcodec_6k_514000.ckpt (speech only)",
        source="https://github.com/microsoft/TF-Codec#pretrained-models",
        filename="tfcodec_6k_514000.ckpt",
        licence="MIT",
        manual="OneDrive (link in the microsoft/TF-Codec README)",
    )
)
register(
    WeightSpec(
        name="encodec-24khz",
        description="EnCodec 24 kHz (transformers EncodecModel), alternative token space for the acoustic decoder",
        source="hf://facebook/encodec_24khz",
        filename="encodec_24khz",
        licence="MIT (facebookresearch/encodec; the Hub card gives none)",
        extra={"allow_patterns": ["config.json", "model.safetensors", "preprocessor_config.json"]},
    )
)
register(
    WeightSpec(
        name="dac-16khz",
        description="DAC 16 kHz (transformers DacModel), alternative token space for the acoustic decoder",
        source="hf://descript/dac_16khz",
        filename="dac_16khz",
        licence="MIT",
        extra={"allow_patterns": ["config.json", "model.safetensors", "preprocessor_config.json"]},
    )
)
