#!/usr/bin/env bash
# Fuzz a sanitizer build of kmcodec's compiled kernels (AddressSanitizer + UndefinedBehaviorSanitizer).
#
# Copies the tracked files of this checkout to WORK, builds kmcodec._kernels there in place with
# KMC_SANITIZE=1 (every finding aborts), and runs tools/fuzz.py on that copy with the sanitizer runtime
# preloaded into Python: a sanitizer finding kills the worker, which fuzz.py counts as a crash (exit 1).
#
#   bash tools/fuzz_asan.sh                          # 20,000 inputs, seed 1
#   bash tools/fuzz_asan.sh --count 100000 --seed 7  # any tools/fuzz.py options
#   bash tools/fuzz_asan.sh --seconds 120            # as many inputs as fit in about 120 s, a new seed each run
#   bash tools/fuzz_asan.sh --seconds 120 --seed 7   # the same, campaign 7
#
# Needs the Python of the current environment (numpy, Pillow, construct, click) and gcc or clang
# with their sanitizer runtimes (Debian: gcc's libasan8 and libubsan1).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=""
SECONDS_WANTED=""
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --work) WORK=$2; shift 2 ;;
        --seconds) SECONDS_WANTED=$2; shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
if [ -z "$WORK" ]; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
fi
PYTHON=${PYTHON:-python}
CC=${CC:-cc}

mkdir -p "$WORK/tree"
(cd "$ROOT" && git ls-files -z | xargs -0 -I{} cp --parents {} "$WORK/tree/") 2>/dev/null \
    || (cd "$ROOT" && tar --exclude=.git --exclude=.venv --exclude='*.so' -cf - . | tar -xf - -C "$WORK/tree")
(cd "$WORK/tree" && KMC_SANITIZE=1 KMC_WERROR=1 "$PYTHON" setup.py -q build_ext --inplace >"$WORK/build.log" 2>&1) \
    || { cat "$WORK/build.log"; exit 1; }

RUNTIME="$($CC -print-file-name=libasan.so)"
if [ ! -e "$RUNTIME" ]; then
    echo "fuzz_asan: no libasan.so for $CC" >&2
    exit 1
fi
# Python itself leaks on purpose at exit: leak detection off; everything else aborts with a report.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ -n "$SECONDS_WANTED" ]; then
    # Measure the rate on a short run, then run as many inputs as fit in the time asked.
    LD_PRELOAD="$RUNTIME" "$PYTHON" "$WORK/tree/tools/fuzz.py" --count 300 --seed 99 --progress 0 >"$WORK/rate.log"
    RATE=$(sed -n 's/.*(\([0-9.,]*\) inputs\/s).*/\1/p' "$WORK/rate.log" | head -1 | tr -d ,)
    COUNT=$("$PYTHON" -c "import sys; print(max(300, int(float(sys.argv[1] or 10) * float(sys.argv[2]))))" \
        "${RATE:-10}" "$SECONDS_WANTED")
    ARGS+=(--count "$COUNT")
    # a fresh campaign each time, unless a --seed was given (then it is that campaign, as long as time allows)
    case " ${ARGS[*]} " in
        *" --seed "* | *" --seed="*) ;;
        *) ARGS+=(--seed "$(date +%s)") ;;
    esac
fi
[ ${#ARGS[@]} -eq 0 ] && ARGS=(--count 20000 --seed 1)
echo "fuzz_asan: sanitizer build in $WORK/tree; tools/fuzz.py ${ARGS[*]}"
LD_PRELOAD="$RUNTIME" "$PYTHON" "$WORK/tree/tools/fuzz.py" --progress 60 "${ARGS[@]}"
