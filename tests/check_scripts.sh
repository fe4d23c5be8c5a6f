#!/usr/bin/env bash
# The repository's shell scripts that run under `set -o pipefail` never pipe into a reader that may stop
# early (grep -q, grep -m, head): the writer is then killed by SIGPIPE and the pipeline fails at random
# (tests/check_install.sh's `ldd | grep -q` did, 22 of 400 times on a loaded machine). Take the output
# whole first (out=$(cmd); grep -q ... <<< "$out"), or use the command's own stop (find -quit).
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0 n=0
for f in tests/*.sh bench/*.sh .ci/run; do
    [ "$f" != tests/check_scripts.sh ] || continue # (its own pattern)
    [ -f "$f" ] && grep -q 'pipefail' "$f" || continue
    n=$((n + 1))
    while IFS= read -r hit; do
        echo "check_scripts: $f:$hit: a pipe into a reader that may stop early, under pipefail"
        bad=$((bad + 1))
    done < <(grep -nE '\|[[:space:]]*(grep[[:space:]]+-[[:alnum:]]*[qm]|head)([[:space:]]|$|\))' "$f" |
        grep -vE '^[0-9]+:[[:space:]]*#' || true)
done
[ "$bad" -eq 0 ] || { echo "check_scripts: FAILED ($bad)"; exit 1; }
echo "check_scripts: the $n scripts under pipefail pipe into no early-stopping reader"
