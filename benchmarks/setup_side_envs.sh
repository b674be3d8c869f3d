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
#
# Usage:  bash benchmarks/setup_side_envs.sh [all|aldm|clap-src|msclap|af1 ...]   (default: all)
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

main() {
    local parts=("$@")
    ((${#parts[@]})) || parts=(all)
    [[ " ${parts[*]} " == *" all "* ]] && parts=(aldm clap-src msclap af1)
    mkdir -p "$SIDE"
    local t0=$SECONDS
    for p in "${parts[@]}"; do
        case "$p" in
            aldm) part_aldm ;;
            clap-src) part_clap_src ;;
            msclap) part_msclap ;;
            af1) part_af1 ;;
            *) log "unknown part '$p' (use all, aldm, clap-src, msclap, af1)"; exit 2 ;;
        esac
    done
    log "done in $((SECONDS - t0)) s; $(du -sh "$SIDE" | cut -f1) in $SIDE"
}

main "$@"
