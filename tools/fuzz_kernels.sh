#!/bin/sh
# Build tools/fuzz_kernels.c (libFuzzer + ASan + UBSan, clang) against kmcodec/csrc and run it.
#
#   tools/fuzz_kernels.sh                 # 60 seconds
#   tools/fuzz_kernels.sh -t 600          # 10 minutes
#   tools/fuzz_kernels.sh -n 1000000      # a million executions
#   tools/fuzz_kernels.sh -t 60 -- -jobs=2 -workers=2   # anything after -- goes to libFuzzer
#
# The binary, the growing corpus and any crash artifacts are under build/fuzz_kernels/
# (the corpus carries over from run to run).  The cm decoder (all four models) is fuzzed too when
# kmcodec/csrc/cm.c exists, or from KMC_CM_SRC (a directory holding cm.c, cm.h and what
# they include, e.g. another worktree's kmcodec/csrc).  CC picks the compiler (clang,
# with libFuzzer: on Debian `apt-get install clang libclang-rt-14-dev`).
# Exit status: libFuzzer's (0: nothing found).
set -eu
cd "$(dirname "$0")/.."

seconds=60
runs=""
while [ $# -gt 0 ]; do
    case "$1" in
    -t) seconds="$2"; shift 2 ;;
    -n) runs="$2"; seconds=0; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [-t SECONDS | -n RUNS] [-- LIBFUZZER-ARGS...]" >&2; exit 2 ;;
    esac
done

CC="${CC:-clang}"
CSRC=kmcodec/csrc
CM_SRC="${KMC_CM_SRC:-$CSRC}"
OUT="$(pwd)/build/fuzz_kernels"
mkdir -p "$OUT/corpus" "$OUT/artifacts"

sources="$CSRC/png_unfilter.c $CSRC/dither.c $CSRC/masking.c $CSRC/quant.c"
cm_flags=""
if [ -f "$CM_SRC/cm.c" ]; then
    sources="$sources $CM_SRC/cm.c"
    cm_flags="-DKMC_FUZZ_CM -I$CM_SRC"
    echo "fuzz_kernels: unfilter, dither (with and without a dither map), nearest_other, masking weights, distinct colours and the cm decoder ($CM_SRC/cm.c)"
else
    echo "fuzz_kernels: unfilter, dither (with and without a dither map), nearest_other, masking weights and distinct colours (no $CM_SRC/cm.c: cm decoder left out)"
fi

# shellcheck disable=SC2086  # the source and flag lists split on purpose
"$CC" -std=c11 -g -O2 -ffp-contract=off -Wall -Wextra \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
    $cm_flags -I"$CSRC" tools/fuzz_kernels.c $sources -o "$OUT/fuzz_kernels"

# An input that runs 60 s is a hang: every input takes well under a second alone, but on a loaded machine
# a 10 s limit once stopped a run on an input that takes 45 ms (docs/sanitizers.md).
set -- -max_len=4096 -timeout=60 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/" "$@"
if [ -n "$runs" ]; then
    set -- -runs="$runs" "$@"
else
    set -- -max_total_time="$seconds" "$@"
fi
SEEDS="$(pwd)/tools/fuzz_kernels_seeds"
cd "$OUT"  # -jobs writes its fuzz-N.log files into the current folder
# tools/fuzz_kernels_seeds: hand-made inputs that reach deep into a target (a dither map with large
# carried errors, a masking image of real size), read as a second corpus, never written.
exec "$OUT/fuzz_kernels" "$@" "$OUT/corpus" "$SEEDS"
