#!/usr/bin/env bash
# Fetch Intel MKL's runtime (PyPI's `mkl` wheel, ~230 MB download) into
# models/mkl/ (git-ignored), for DRIFTUI_MKL=models/mkl: driftui's f32
# products then run on MKL's sgemm, as PyTorch's CPU wheels do (see the
# README's Performance section and src/model/blas.rs). Optional: without it
# driftui multiplies with gemm. Safe to run again: it does nothing when the
# libraries are there.
#
# Only what a sequential cblas_sgemm needs is kept (~440 MB on disk): the
# single dynamic library, its LP64 interface, the sequential layer, the core,
# and the per-CPU kernels it picks at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

version=2026.2.1
dest=models/mkl
libs=(libmkl_rt.so.3 libmkl_intel_lp64.so.3 libmkl_sequential.so.3 libmkl_core.so.3
      libmkl_def.so.3 libmkl_mc3.so.3 libmkl_avx2.so.3 libmkl_avx512.so.3 libmkl_avx10.so.3)

have_all() {
    local l
    for l in "${libs[@]}"; do [[ -s "$dest/$l" ]] || return 1; done
    [[ "$(cat "$dest/VERSION" 2>/dev/null)" == "$version" ]]
}
if have_all; then
    echo "fetch-mkl: $dest already holds MKL $version"
    exit 0
fi

py=${PYTHON:-python3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fetch-mkl.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetch-mkl: pip download mkl==$version (about 230 MB)" >&2
"$py" -m pip download --quiet --no-deps --dest "$tmp" "mkl==$version"
wheel=$(ls "$tmp"/mkl-"$version"-*.whl)

# Extract to a temporary directory, then move into place: an interrupted run
# never leaves a truncated library under its final name.
mkdir -p "$dest"
"$py" - "$wheel" "$tmp/lib" "${libs[@]}" <<'PY'
import os, shutil, sys, zipfile
wheel, out, *libs = sys.argv[1:]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    by_name = {os.path.basename(n): n for n in z.namelist()}
    for lib in libs:
        if lib not in by_name:
            sys.exit(f"fetch-mkl: {lib} is not in {wheel}")
        with z.open(by_name[lib]) as src, open(os.path.join(out, lib), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
for l in "${libs[@]}"; do mv -f "$tmp/lib/$l" "$dest/$l"; done
echo "$version" > "$dest/VERSION"
echo "fetch-mkl: MKL $version in $dest (DRIFTUI_MKL=$dest)"
