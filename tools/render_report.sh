#!/usr/bin/env bash
# Render an HTML report (kmc compare --html) in headless Chromium and save a screenshot.
#
#   tools/render_report.sh report.html [screenshot.png] [WIDTHxHEIGHT]
#
# Needs Debian's chromium (apt-get install -y chromium).  Runs with no sandbox
# (as root in a container), no GPU and no network features, in a throw-away
# profile, so the page can use nothing but what it embeds.
set -euo pipefail
if [[ $# -lt 1 || $# -gt 3 ]]; then
    echo "usage: $0 REPORT.html [SCREENSHOT.png] [WIDTHxHEIGHT]" >&2
    exit 2
fi
page=$(realpath "$1")
shot=$(realpath -m "${2:-${1%.html}.png}")
size=${3:-1400x2000}
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $browser ]]; then
    echo "render_report: chromium not found (apt-get install -y chromium)" >&2
    exit 1
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --screenshot="$shot" --window-size="${size/x/,}" \
    "file://$page" 2>"$profile/log" || { cat "$profile/log" >&2; exit 1; }
[[ -s $shot ]] || { echo "render_report: no screenshot written" >&2; cat "$profile/log" >&2; exit 1; }
echo "$shot"
