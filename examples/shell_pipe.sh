#!/usr/bin/env bash
# ncodec in a shell pipeline: bytes flow through stdin/stdout, no temporary files.
#
#   examples/shell_pipe.sh IMAGE OUT.png [encode options, default --lossless]
#
# IMAGE -> ncodec encode (stdout) -> ncodec info / ncodec decode (stdin) -> OUT.png.
# NCODEC may name another command for `ncodec` (e.g. "python -m tools.cli").
set -euo pipefail
in=${1:?usage: shell_pipe.sh IMAGE OUT.png [encode options]}
out=${2:?usage: shell_pipe.sh IMAGE OUT.png [encode options]}
shift 2
opts=("$@")
[ ${#opts[@]} -eq 0 ] && opts=(--lossless)
ncodec=${NCODEC:-ncodec}

$ncodec encode - -o - "${opts[@]}" < "$in" | tee "$out.ncz" | $ncodec decode - -o - > "$out"
$ncodec info - < "$out.ncz"
