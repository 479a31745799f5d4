#!/usr/bin/env bash
# Runs every scenario in examples/ and shows what happened: each script's
# leading comment explains it, then the run prints its dumps and a summary.
set -euo pipefail
cli="$1"
dir="$(dirname "$0")/../examples"
status=0
for f in "$dir"/*.smm; do
  echo
  echo "################################################################"
  echo "# $(basename "$f")"
  sed -n '/^#/!q; s/^# \{0,1\}/#   /p' "$f"
  echo "################################################################"
  if ! "$cli" run --trace "$f"; then
    echo "!! $(basename "$f") failed"
    status=1
  fi
done
exit $status
