#!/usr/bin/env bash
# Create the side environments the comparison scripts in benchmarks/ run the official code in.
#
# hsm-bench itself never depends on any of this: these environments hold the reference
# implementations (audioldm-eval 0.0.3, msclap 1.3.4, laion-clap 1.1.7, the Audio Flamingo 1
# helpers' pip dependencies), so that benchmarks/compare_*.py and benchmarks/make_golden.py
# can run them beside hsm-bench and print or record their numbers.
#
# Everything lands in benchmarks/.side/ (git-ignored), next to this script:
#
#   .side/aldm/        (a) venv: audioldm-eval==0.0.3 + torch==2.13.0 (CPU) + torchaudio==2.11.0
#                          with its CUDA-linked .so files removed (audio is read with soundfile
#                          by the runners; torchaudio's pure-torch parts still import)
#   .side/clap-src/    (b) unpacked wheels of msclap==1.3.4, laion-clap==1.1.7, torchlibrosa==0.1.0
#                          (imported by compare_clap_msclap.py and make_golden.py without installing)
#   .side/msclap/      (c) venv: msclap==1.3.4 with its pins (numpy<2, transformers<5, librosa<0.11)
#                          + torch==2.13.0 (CPU), for msclap_wrapper_runner.py (CLAPWrapper end to end)
#   .side/af1/deps/    (d) einops==0.8.2, einops-exts==0.0.4 (pip --target) for compare_af1_official.py;
#   .side/af1/src/         the official AF1 source files: NOT fetched here (see the message at the end)
#   .side/audiosep/    (e) venv: the AudioSep environment's pins that move numbers (transformers 4.28.1, whose
#                          RoBERTa keeps `position_ids` in the state dict; lightning 2.0.0; torchlibrosa 0.1.0)
#                          + torch==2.13.0 (CPU), for compare_audiosep_official.py
#   .side/src/AudioSep/, .side/src/dcase2024_task9_baseline/
#                          the official sources at pinned commits: cloned from GitHub when it answers, else
#                          copied from AUDIOSEP_SRC=DIR / DCASE9_SRC=DIR (a clone or an extracted archive);
#                          a folder already in place is kept
#   .side/bimodalsep/  (f) venv: BiModalSep's requirements.txt pins that move numbers (transformers 4.30.2, librosa
#                          0.9.2) + torchlibrosa 0.1.0 + torch==2.13.0 (CPU), for compare_bimodalsep_official.py
#   .side/src/BiModalAudioSeparation/
#                          microsoft/BiModalAudioSeparation at a pinned commit: cloned from GitHub when it answers,
#                          else copied from BIMODALSEP_SRC=DIR (a clone or an extracted archive); kept when present
#   .side/lass/        (g) venv: what liuxubo717/LASS's code needs on Python 3.11 (transformers 4.30.2, the last
#                          whose BERT saves `position_ids` like LASSNet.pt, since environment.yml's 4.13.0 has
#                          no wheels here; `from transformers import *` also loads testing_utils: pytest 7.3.2;
#                          librosa 0.9.2 for the positional `pad_center(x, size)` of utils/stft.py, and the
#                          setuptools that still has pkg_resources) + torch==2.13.0 (CPU), for
#                          compare_lass_net_official.py
#   .side/src/LASS/        liuxubo717/LASS at a pinned commit (no licence file: read, never committed): cloned
#                          from GitHub when it answers, else copied from LASS_SRC=DIR (a clone or an extracted
#                          archive); kept when present
#   .side/clipsep/     (h) venv: CLIPSep's environment.yml pins that move numbers (librosa 0.9.2, whose STFT pads
#                          with zeros; numpy 1.23.5, the nearest with Python 3.11 wheels to its 1.23.1, which
#                          utils.py's `np.complex` needs) + OpenAI's `clip` (PyPI openai-clip 1.0.1, the
#                          git package's code and BPE file) + opencv for utils.py's import + torch==2.13.0 (CPU);
#                          no torchvision (its 0.28.0 wheel does not load on this torch build: the comparison
#                          stands in for it), for compare_clipsep_official.py
#   .side/src/CLIPSep/     sony/CLIPSep at a pinned commit: cloned from GitHub when it answers, else copied from
#                          CLIPSEP_SRC=DIR (a clone or an extracted archive); kept when present
#   .side/src/TF-Codec/(i) microsoft/TF-Codec (MIT) at a pinned commit: cloned from GitHub when it answers, else
#                          copied from TFCODEC_SRC=DIR (a clone, a bare git dir or an extracted archive); its
#                          models/ import only torch, numpy and scipy, so compare_tfcodec_official.py runs it in
#                          the aldm venv of (a), which this part makes when it is missing
#   .side/audiomae/deps/ (j) timm==0.3.2 (pip --target, no deps), the version AudioMAE's code is written for, with
#                          the two files of its official timm_patch/ copied in (as its timm_patch.sh does), for
#                          compare_audiomae_official.py, which runs with .side/aldm's Python (torch, torchaudio)
#   .side/src/AudioMAE/    facebookresearch/AudioMAE at a pinned commit (CC BY-NC 4.0: read, never committed): cloned
#                          from GitHub when it answers, else copied from AUDIOMAE_SRC=DIR (a clone, bare or not, or
#                          an extracted archive); kept when present
#
# Usage:  bash benchmarks/setup_side_envs.sh [all|aldm|clap-src|msclap|af1|audiosep|bimodalsep|lass|clipsep|tfcodec|audiomae ...]   (default: all)
# Env:    PYTHON=python3.11 (the interpreter the venvs are made from; default python3)
#         SIDE_DIR=/elsewhere (default: benchmarks/.side)
#         TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" (extra pip arguments for
#         the torch install, e.g. to get the CPU build where the default index serves CUDA builds)
#
# Idempotent: a part whose recipe is unchanged and whose done-marker exists is skipped; a part
# that failed half-way (no marker) is removed and made again. Remove benchmarks/.side to start
# from scratch. Needs PyPI (pip); torch==2.13.0 must stay pinned (an unpinned torch pulls a
# multi-GB CUDA build).

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SIDE="${SIDE_DIR:-$HERE/.side}"
PYTHON="${PYTHON:-python3}"
TORCH="torch==2.13.0"

# The reference packages, and pins of what moves their numbers (the versions the golden tables
# of tests/golden/ were made with; see its README).
ALDM_PKGS=(audioldm-eval==0.0.3 ssr-eval==0.0.7 Wave==0.0.2 resampy==0.4.3 torchaudio==2.11.0 scikit-image==0.26.0
           librosa==0.11.0 numpy==2.4.6 scipy==1.17.1 soundfile==0.14.0 tqdm torchlibrosa==0.1.0)
CLAP_WHEELS=(msclap==1.3.4 laion-clap==1.1.7 torchlibrosa==0.1.0)
MSCLAP_PKGS=(msclap==1.3.4 torchaudio==2.11.0 transformers==4.57.6 tokenizers==0.22.2 numpy==1.26.4 soundfile==0.14.0)
AF1_PKGS=(einops==0.8.2 einops-exts==0.0.4)
# AudioSep's environment.yml pins, minus CUDA, torchvision and torchaudio (imported by the official
# modules but unused on the text-query path: compare_audiosep_official.py stands in for them); setuptools
# 80.9 still ships pkg_resources, which lightning 2.0.0 imports (torch 2.13 needs setuptools >= 77.0.3)
AUDIOSEP_PKGS=(transformers==4.28.1 tokenizers==0.13.3 huggingface-hub==0.14.1 lightning==2.0.0 lightning-cloud==0.5.33
               torchlibrosa==0.1.0 librosa==0.10.0.post2 numpy==1.26.4 scipy==1.11.4 soundfile==0.12.1 h5py pandas
               scikit-learn ftfy regex braceexpand webdataset wget Pillow pyyaml tqdm setuptools==80.9.0)
AUDIOSEP_COMMIT=944583f18b84589dc965de3ad77525c945334252  # Audio-AGI/AudioSep (MIT)
DCASE9_COMMIT=b9ebf346ae0b9e90b7d5c2143686e909c54a72f0    # Audio-AGI/dcase2024_task9_baseline (no licence file)
# BiModalSep's requirements.txt pins (transformers, librosa) and what its model code imports; the UI,
# video and evaluation packages of demo.py are stood in for by compare_bimodalsep_official.py
# (setuptools < 81: librosa 0.9.2 imports pkg_resources)
BIMODALSEP_PKGS=(transformers==4.30.2 tokenizers==0.13.3 numpy==1.26.4 librosa==0.9.2 torchlibrosa==0.1.0
                 scipy==1.11.4 soundfile==0.12.1 "setuptools<81")
BIMODALSEP_COMMIT=7b835cf80f6782b7e6362ff81080cadb907c8185  # microsoft/BiModalAudioSeparation (MIT)
# LASS-Net: the versions its code runs with on Python 3.11 (see (g) above)
LASS_PKGS=(transformers==4.30.2 tokenizers==0.13.3 numpy==1.26.4 librosa==0.9.2 scipy==1.11.4 soundfile==0.12.1
           setuptools==80.10.2 pytest==7.3.2)
LASS_COMMIT=8979776fec4b41d02811fafbc4e2e3e3f2b247f1  # liuxubo717/LASS (no licence file)
# CLIPSep: see (h) above
CLIPSEP_PKGS=(openai-clip==1.0.1 ftfy==6.3.1 regex tqdm setuptools==80.10.2 librosa==0.9.2 numpy==1.23.5 numba==0.57.1
              scipy==1.10.1 resampy==0.4.3 soundfile==0.14.0 opencv-python-headless==4.8.1.78 Pillow)
CLIPSEP_COMMIT=22b6f911c2b7548766f1da5f5a2bb03ba1940959  # sony/CLIPSep (MIT)
# AudioMAE: see (j) above
AUDIOMAE_PKGS=(timm==0.3.2)
AUDIOMAE_COMMIT=bd60e29651285f80d32a6405082835ad26e6f19f  # facebookresearch/AudioMAE (CC BY-NC 4.0)
TFCODEC_COMMIT=1a4d3271242c1e808df19c62ee8847fb307ee1a9  # microsoft/TF-Codec (MIT); see (i) above

log() { printf '[setup_side_envs] %s\n' "$*"; }

# recipe string -> done-marker: a part is current when its marker holds the same recipe
is_done() { [[ -f "$1/.hsm-side-done" ]] && [[ "$(cat "$1/.hsm-side-done")" == "$2" ]]; }
mark_done() { printf '%s' "$2" >"$1/.hsm-side-done"; }

make_venv() {  # make_venv DIR PKG... : a fresh venv with the CPU torch first, then PKG...
    local dir="$1"
    shift
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    "$dir/bin/python" -m pip install -q ${TORCH_PIP_ARGS:-} "$TORCH"
    # torch stays pinned while the rest resolves (a dependency must never swap in another build)
    "$dir/bin/python" -m pip install -q "$@" "$TORCH"
}

drop_torchaudio_so() {  # torchaudio's compiled extensions link CUDA libraries absent here
    local site
    site="$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    rm -f "$site"/torchaudio/lib/*.so
}

part_aldm() {
    local dir="$SIDE/aldm" recipe="$TORCH ${ALDM_PKGS[*]} -torchaudio.so"
    if is_done "$dir" "$recipe"; then log "aldm: up to date ($dir)"; return; fi
    log "aldm: creating $dir"
    make_venv "$dir" "${ALDM_PKGS[@]}"
    drop_torchaudio_so "$dir"
    "$dir/bin/python" - <<'EOF'
import audioldm_eval.audio.stft, audioldm_eval.metrics.kl, audioldm_eval.feature_extractors.panns  # noqa: F401
import ssr_eval.metrics, skimage.metrics, torchaudio.transforms  # noqa: F401
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
print("aldm: audioldm-eval imports offline, torch", torch.__version__)
EOF
    mark_done "$dir" "$recipe"
}

part_clap_src() {
    local dir="$SIDE/clap-src" recipe="${CLAP_WHEELS[*]} -tests"
    if is_done "$dir" "$recipe"; then log "clap-src: up to date ($dir)"; return; fi
    log "clap-src: unpacking ${CLAP_WHEELS[*]} into $dir"
    rm -rf "$dir" "$SIDE/clap-wheels"
    mkdir -p "$dir" "$SIDE/clap-wheels"
    "$PYTHON" -m pip download -q --no-deps "${CLAP_WHEELS[@]}" -d "$SIDE/clap-wheels"
    for w in "$SIDE"/clap-wheels/*.whl; do "$PYTHON" -m zipfile -e "$w" "$dir"; done
    rm -rf "$dir/tests"  # laion-clap's wheel ships a top-level `tests` package: it would shadow the project's
    for p in msclap/models/clap.py laion_clap/clap_module/model.py torchlibrosa/stft.py; do
        [[ -f "$dir/$p" ]] || { log "clap-src: $p missing after unpacking"; exit 1; }
    done
    rm -rf "$SIDE/clap-wheels"
    mark_done "$dir" "$recipe"
}

part_msclap() {
    local dir="$SIDE/msclap" recipe="$TORCH ${MSCLAP_PKGS[*]} -torchaudio.so"
    if is_done "$dir" "$recipe"; then log "msclap: up to date ($dir)"; return; fi
    log "msclap: creating $dir"
    make_venv "$dir" "${MSCLAP_PKGS[@]}"
    drop_torchaudio_so "$dir"
    "$dir/bin/python" - <<'EOF'
import msclap.CLAPWrapper  # noqa: F401
import numpy, torch, transformers
assert torch.__version__.startswith("2.13.0"), torch.__version__
print(f"msclap: CLAPWrapper imports offline, torch {torch.__version__}, transformers {transformers.__version__}, numpy {numpy.__version__}")
EOF
    mark_done "$dir" "$recipe"
}

part_af1() {
    local dir="$SIDE/af1" recipe="${AF1_PKGS[*]}"
    mkdir -p "$dir/src"
    if is_done "$dir" "$recipe"; then
        log "af1: deps up to date ($dir/deps)"
    else
        log "af1: pip install --target $dir/deps ${AF1_PKGS[*]}"
        rm -rf "$dir/deps"
        "$PYTHON" -m pip install -q --no-deps --target "$dir/deps" "${AF1_PKGS[@]}"
        mark_done "$dir" "$recipe"
    fi
    local missing=()
    for f in helpers.py flamingo.py flamingo_lm.py utils.py data.py; do
        [[ -f "$dir/src/$f" ]] || missing+=("$f")
    done
    if ((${#missing[@]})); then
        cat <<EOF
[setup_side_envs] af1: the official Audio Flamingo 1 source files are not fetched by this script
  (they live on GitHub, NVIDIA/audio-flamingo, branch legacy_audio_flamingo_1, MIT licence).
  Missing in $dir/src: ${missing[*]}
  From a clone of that repository, on any machine:
      for f in helpers.py flamingo.py flamingo_lm.py utils.py; do
          git -C audio-flamingo show legacy_audio_flamingo_1:inference/src/\$f > $dir/src/\$f
      done
      git -C audio-flamingo show legacy_audio_flamingo_1:inference/data.py > $dir/src/data.py
  benchmarks/compare_af1_official.py reads $dir/src and $dir/deps by default
  (--src / --deps override them).
EOF
    else
        log "af1: official sources present in $dir/src"
    fi
}

official_source() {  # official_source NAME URL COMMIT PROBE SRC_ENV: the sources at $SIDE/src/NAME
    local dest="$SIDE/src/$1" url="$2" commit="$3" probe="$4" from="${!5:-}"
    if [[ -f "$dest/$probe" ]]; then log "$1: sources present in $dest"; return 0; fi
    rm -rf "$dest"
    mkdir -p "$dest"
    if [[ -n "$from" ]]; then  # a clone (any commit checked out: archive the pinned one) or a plain folder
        if git -C "$from" cat-file -e "$commit" 2>/dev/null; then
            git -C "$from" archive "$commit" | tar -x -C "$dest"
        else
            cp -a "$from/." "$dest/"
        fi
    else
        local tmp
        tmp="$(mktemp -d)"
        if GIT_TERMINAL_PROMPT=0 timeout 300 git clone -q "$url" "$tmp/repo" 2>/dev/null \
            && git -C "$tmp/repo" archive "$commit" | tar -x -C "$dest"; then
            log "$1: cloned $url at $commit"
        fi
        rm -rf "$tmp"
    fi
    if [[ -f "$dest/$probe" ]]; then return 0; fi
    rm -rf "$dest"
    log "$1: $url could not be cloned and $5 is not set: on a machine that reaches GitHub run"
    log "    git clone $url && git -C ${url##*/} archive $commit | tar -x -C $dest"
    log "  (or point $5=DIR at a clone or an extracted archive of that commit and rerun this part)"
    return 1
}

part_audiosep() {
    local dir="$SIDE/audiosep" recipe="$TORCH ${AUDIOSEP_PKGS[*]}" ok=0
    official_source AudioSep https://github.com/Audio-AGI/AudioSep "$AUDIOSEP_COMMIT" models/resunet.py AUDIOSEP_SRC || ok=1
    official_source dcase2024_task9_baseline https://github.com/Audio-AGI/dcase2024_task9_baseline "$DCASE9_COMMIT" \
        models/resunet.py DCASE9_SRC || ok=1
    if is_done "$dir" "$recipe"; then
        log "audiosep: up to date ($dir)"
    else
        log "audiosep: creating $dir"
        make_venv "$dir" "${AUDIOSEP_PKGS[@]}"
        "$dir/bin/python" - <<'EOF'
import lightning.pytorch, torchlibrosa.stft, transformers  # noqa: F401
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert transformers.__version__ == "4.28.1", transformers.__version__
print(f"audiosep: lightning {lightning.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
EOF
        mark_done "$dir" "$recipe"
    fi
    return "$ok"
}

part_bimodalsep() {
    local dir="$SIDE/bimodalsep" recipe="$TORCH ${BIMODALSEP_PKGS[*]}" ok=0
    official_source BiModalAudioSeparation https://github.com/microsoft/BiModalAudioSeparation "$BIMODALSEP_COMMIT" \
        models/cond_unet_attn.py BIMODALSEP_SRC || ok=1
    if is_done "$dir" "$recipe"; then
        log "bimodalsep: up to date ($dir)"
    else
        log "bimodalsep: creating $dir"
        make_venv "$dir" "${BIMODALSEP_PKGS[@]}"
        "$dir/bin/python" - <<'EOF'
import librosa, torchlibrosa.stft, transformers  # noqa: F401
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert transformers.__version__ == "4.30.2", transformers.__version__
print(f"bimodalsep: transformers {transformers.__version__}, librosa {librosa.__version__}, torch {torch.__version__}")
EOF
        mark_done "$dir" "$recipe"
    fi
    return "$ok"
}

part_lass() {
    local dir="$SIDE/lass" recipe="$TORCH ${LASS_PKGS[*]}" ok=0
    official_source LASS https://github.com/liuxubo717/LASS "$LASS_COMMIT" model/LASSNet.py LASS_SRC || ok=1
    if is_done "$dir" "$recipe"; then
        log "lass: up to date ($dir)"
    else
        log "lass: creating $dir"
        make_venv "$dir" "${LASS_PKGS[@]}"
        "$dir/bin/python" - <<'EOF'
import inspect
import librosa.util, pkg_resources, torch, transformers  # noqa: F401
from transformers import *  # noqa: F401,F403  (what model/text_encoder.py does)
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert transformers.__version__ == "4.30.2", transformers.__version__
assert list(inspect.signature(librosa.util.pad_center).parameters)[1] == "size"
print(f"lass: transformers {transformers.__version__}, librosa {librosa.__version__}, torch {torch.__version__}")
EOF
        mark_done "$dir" "$recipe"
    fi
    return "$ok"
}

part_clipsep() {
    local dir="$SIDE/clipsep" recipe="$TORCH ${CLIPSEP_PKGS[*]}" ok=0
    official_source CLIPSep https://github.com/sony/CLIPSep "$CLIPSEP_COMMIT" clipsep/clipsep.py CLIPSEP_SRC || ok=1
    if is_done "$dir" "$recipe"; then
        log "clipsep: up to date ($dir)"
    else
        log "clipsep: creating $dir"
        make_venv "$dir" "${CLIPSEP_PKGS[@]}"
        "$dir/bin/python" - <<'EOF'
import inspect, sys, types
tv = types.ModuleType("torchvision.transforms")  # what `clip` imports from torchvision (image transforms only)
tv.__dict__.update({n: None for n in ("Compose", "Resize", "CenterCrop", "ToTensor", "Normalize")})
sys.modules.update({"torchvision": types.ModuleType("torchvision"), "torchvision.transforms": tv})
import clip, cv2, librosa, numpy, torch  # noqa: F401
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert inspect.signature(librosa.stft).parameters["pad_mode"].default == "constant"
assert "ViT-B/32" in clip.available_models()
print(f"clipsep: librosa {librosa.__version__}, numpy {numpy.__version__}, openai clip, torch {torch.__version__}")
EOF
        mark_done "$dir" "$recipe"
    fi
    return "$ok"
}

part_tfcodec() {
    local ok=0
    official_source TF-Codec https://github.com/microsoft/TF-Codec "$TFCODEC_COMMIT" models/tfcodec.py TFCODEC_SRC || ok=1
    is_done "$SIDE/aldm" "$TORCH ${ALDM_PKGS[*]} -torchaudio.so" || part_aldm
    "$SIDE/aldm/bin/python" -c 'import numpy, scipy.signal, torch; print("tfcodec: aldm venv has torch", torch.__version__)'
    return "$ok"
}

part_audiomae() {
    local dir="$SIDE/audiomae" recipe="${AUDIOMAE_PKGS[*]} +timm_patch" ok=0
    official_source AudioMAE https://github.com/facebookresearch/AudioMAE "$AUDIOMAE_COMMIT" models_mae.py \
        AUDIOMAE_SRC || ok=1
    if is_done "$dir" "$recipe"; then
        log "audiomae: deps up to date ($dir/deps)"
    elif ((ok == 0)); then  # the patch files come from the official source
        log "audiomae: pip install --target $dir/deps ${AUDIOMAE_PKGS[*]}, patched with timm_patch/"
        rm -rf "$dir"
        mkdir -p "$dir"
        "$PYTHON" -m pip install -q --no-deps --target "$dir/deps" "${AUDIOMAE_PKGS[@]}"
        cp "$SIDE/src/AudioMAE/timm_patch/helpers.py" "$dir/deps/timm/models/layers/helpers.py"
        cp "$SIDE/src/AudioMAE/timm_patch/swin_transformer.py" "$dir/deps/timm/models/swin_transformer.py"
        mark_done "$dir" "$recipe"
    fi
    [[ -x "$SIDE/aldm/bin/python" ]] || log "audiomae: compare_audiomae_official.py runs with $SIDE/aldm/bin/python: make part aldm too"
    return "$ok"
}

main() {
    local parts=("$@")
    ((${#parts[@]})) || parts=(all)
    [[ " ${parts[*]} " == *" all "* ]] && parts=(aldm clap-src msclap af1 audiosep bimodalsep lass clipsep tfcodec audiomae)
    mkdir -p "$SIDE"
    local t0=$SECONDS
    for p in "${parts[@]}"; do
        case "$p" in
            aldm) part_aldm ;;
            clap-src) part_clap_src ;;
            msclap) part_msclap ;;
            af1) part_af1 ;;
            audiosep) part_audiosep ;;
            bimodalsep) part_bimodalsep ;;
            lass) part_lass ;;
            clipsep) part_clipsep ;;
            tfcodec) part_tfcodec ;;
            audiomae) part_audiomae ;;
            *) log "unknown part '$p' (use all, aldm, clap-src, msclap, af1, audiosep, bimodalsep, lass, clipsep, tfcodec, audiomae)"; exit 2 ;;
        esac
    done
    log "done in $((SECONDS - t0)) s; $(du -sh "$SIDE" | cut -f1) in $SIDE"
}

main "$@"
