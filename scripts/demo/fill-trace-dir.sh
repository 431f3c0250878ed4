#!/usr/bin/env bash
# Plays back the committed TRL SFT run (tests/fixtures/foreign/trl-sft) into
# DIR as a trainer would write it: the callback's events.jsonl line by line,
# each checkpoint-N/ when its snapshot line is written (with the tokenizer
# files a real checkpoint carries, which the fixture leaves out), GAP seconds
# apart. For watching `driftui trace DIR` work on a directory that fills:
#
#   scripts/demo/fill-trace-dir.sh /tmp/trace-demo 8 &
#   driftui trace /tmp/trace-demo
set -euo pipefail
dir=${1:?usage: fill-trace-dir.sh DIR [GAP_SECONDS]}
gap=${2:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
src=$root/tests/fixtures/foreign/trl-sft
mkdir -p "$dir"
: > "$dir/events.jsonl"
while IFS= read -r line; do
  # Stamped now, as the callback would stamp it: the header's rates and ETA
  # are then those of the playback.
  python3 -c 'import json, sys, time; e = json.loads(sys.argv[1]); e["t"] = time.time(); print(json.dumps(e))' \
    "$line" >> "$dir/events.jsonl"
  if [[ $line == *'"kind": "snapshot"'* ]]; then
    ck=$(sed -E 's/.*"path": "([^"]+)".*/\1/' <<<"$line")
    tmp=$dir/.$ck.partial
    cp -r "$src/$ck" "$tmp"
    cp "$root/assets/builtin/tokenizer.json" "$tmp/"
    python3 - "$tmp/tokenizer_config.json" <<'PY'
import json, sys
chatml = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")
json.dump({"chat_template": chatml, "eos_token": "<|im_end|>",
           "pad_token": "<|endoftext|>", "bos_token": None}, open(sys.argv[1], "w"))
PY
    mv "$tmp" "$dir/$ck"
  fi
  sleep "$gap"
done < "$src/events.jsonl"
