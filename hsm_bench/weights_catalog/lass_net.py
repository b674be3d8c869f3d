"""Checkpoints of LASS-Net (see hsm_bench.weights and systems/lass_net.py).

LASS-Net (Liu et al., INTERSPEECH 2022; liuxubo717/LASS) publishes one file, ``LASSNet.pt``,
on Google Drive (README: file id 1f8eCCYYaBdhsFqoi7PJMrT9Oo7GaWLdR): a ``torch.save`` of
``{"model": DataParallel(LASSNet).state_dict()}``, so every key starts with ``module.``; it
holds the U-Net and the fine-tuned BERT-mini query encoder (``module.text_embedder.*``).
Google Drive serves browsers only, so the fetchable source registered here is the copy
on the Hub repository ``Dongchao/pre_trained_model``, a third-party mirror that AudioGPT's
install script downloads and loads with LASS's own model code and strict loading (the same
container and key layout); nobody publishes a digest of either copy, so the first download
pins the sha256. To use the Google Drive original instead, download it in a browser and
pass ``--weights lass-net=/path/to/LASSNet.pt``. The LASS repository has no LICENSE file:
all rights reserved by the authors; the weights are used for research evaluation only and
must not be redistributed.

The text encoder's architecture and WordPiece vocabulary come from the Hub repository
``prajjwal1/bert-mini`` (config and ``vocab.txt`` only: its weights are replaced by the
ones in ``LASSNet.pt``).
"""

from hsm_bench.weights import WeightSpec, register

LASS_DRIVE = "https://drive.google.com/file/d/1f8eCCYYaBdhsFqoi7PJMrT9Oo7GaWLdR/view?usp=sharing"

register(
    WeightSpec(
        name="lass-net",
        description="LASS-Net separator + fine-tuned BERT-mini query encoder, LASSNet.pt (third-party Hub mirror "
        f"Dongchao/pre_trained_model used by AudioGPT; the authors' original is on Google Drive: {LASS_DRIVE})",
        source="hf://Dongchao/pre_trained_model/LASSNet.pt",
        filename="LASSNet.pt",
        licence="none given (liuxubo717/LASS has no LICENSE file: all rights reserved; research evaluation only, "
        "do not redistribute)",
    )
)
register(
    WeightSpec(
        name="bert-mini",
        description="BERT-mini config + uncased WordPiece vocabulary (LASS-Net's query encoder; its weights come "
        "from LASSNet.pt)",
        source="hf://prajjwal1/bert-mini",
        filename="bert-mini",
        licence="MIT (model card)",
        extra={"allow_patterns": ["config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]},
    )
)
