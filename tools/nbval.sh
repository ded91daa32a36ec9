#!/usr/bin/env bash
# nbval of the book in two passes: every chapter as this machine runs it, then the chapters again with
# PyTorch's, oneDNN's and MKL's kernels held to a lower instruction set (LOW_ISA), where float32 results round
# differently, so that a committed output which only this CPU reproduces fails here and not on a reader's laptop.
#
#   tools/nbval.sh PYTEST "LOW_ISA" "LOW_CHAPTERS" "SIDE_CHAPTERS" [pytest options...]
#
# LOW_CHAPTERS run under the lower instruction set after the native pass, in the same stream. SIDE_CHAPTERS
# (the slowest ones under the narrower kernels) run under it in a second stream, at the same time as the
# first: most chapter cells keep one core busy (several chapters compute on one thread), so two streams fill
# the two cores of a small machine instead of leaving one idle. NBVAL_STREAMS=1 runs everything in one stream.
# Each stream's output is prefixed with its name; the exit status is non-zero when either stream failed.
set -uo pipefail
pytest=$1 low_isa=$2 low=$3 side=$4
shift 4

timed() {  # run a command, print how long it took, keep its exit status
  local start rc
  start=$(date +%s)
  "$@"; rc=$?
  echo "[$(( $(date +%s) - start ))s, exit $rc] $*"
  return $rc
}
native() { timed "$pytest" -q -p no:cacheprovider --nbval book/ "$@"; }
narrow() { [ $# -gt 0 ] || return 0; timed env $low_isa "$pytest" -q -p no:cacheprovider --nbval "$@"; }

if [ "${NBVAL_STREAMS:-2}" = 1 ] || [ -z "$side" ]; then
  native "$@" && narrow $low $side "$@"
  exit $?
fi

started=$(date +%s)
{ native "$@" && narrow $low "$@"; } 2>&1 | sed -u 's/^/[native, then low ISA] /' &
first=$!
{ narrow $side "$@"; } 2>&1 | sed -u 's/^/[low ISA, side stream] /' &
second=$!
wait $first; rc1=$?
wait $second; rc2=$?
echo "nbval: both streams done in $(( $(date +%s) - started ))s (exit $rc1 and $rc2)"
[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ]
