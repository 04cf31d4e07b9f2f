#!/usr/bin/env bash
# Prepare the one-shot GPU check (benchmarks/device/run.sh) on THIS machine, before the device
# call. Fills two git-ignored folders of the checkout, which travel only when named in `carry`:
#   device-data/  the four music .mat files and the FSDD recordings (from $RNNBENCH_DATA or
#                 the checkout's data/), laid out as rnnbench expects (music/*.mat, fsdd/recordings/)
#   .whl/         Python 3.12 manylinux x86_64 wheels the device lacks: soundfile (+ cffi,
#                 pycparser) and platformdirs, at the versions of constraints.txt
# and prints the carry list. Safe to run again: it refreshes the data, keeps downloaded wheels.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GIVEN=${RNNBENCH_DATA:-$ROOT/data}
SRC=$(cd "$GIVEN" 2>/dev/null && pwd) || { echo "error: no data folder $GIVEN" >&2; exit 1; }
cd "$ROOT"

DATA=device-data
WHEELS=.whl
MAX_CARRY_MIB=56     # the device tool carries 64 MiB in all, the working tree included
PACKAGES=(soundfile cffi pycparser platformdirs)
PLATFORMS=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi

echo "== data: $SRC -> $DATA/"
[[ -d $SRC/music && -d $SRC/fsdd/recordings ]] || {
    echo "error: $SRC has no music/ and fsdd/recordings/; set RNNBENCH_DATA" >&2; exit 1; }
rm -rf "$DATA"
mkdir -p "$DATA/music" "$DATA/fsdd"
for f in JSB_Chorales Nottingham MuseData Piano_midi; do
    cp -p "$SRC/music/$f.mat" "$DATA/music/"
done
cp -p "$SRC/music/SOURCE.md" "$DATA/music/" 2>/dev/null || true
cp -p "$SRC/fsdd/SOURCE.md" "$DATA/fsdd/" 2>/dev/null || true
cp -rp "$SRC/fsdd/recordings" "$DATA/fsdd/"
n_mat=$(find "$DATA/music" -name '*.mat' | wc -l)
n_wav=$(find "$DATA/fsdd/recordings" -name '*.wav' | wc -l)
n_src=$(find "$SRC/fsdd/recordings" -name '*.wav' | wc -l)
[[ $n_mat == 4 && $n_wav == "$n_src" ]] || {
    echo "error: copied $n_mat .mat files and $n_wav of $n_src .wav files" >&2; exit 1; }
echo "   $n_mat .mat files, $n_wav .wav files, $(du -sb "$DATA" | cut -f1) bytes"

echo "== wheels -> $WHEELS/ (versions from constraints.txt)"
mkdir -p "$WHEELS"
for name in "${PACKAGES[@]}"; do
    pin=$(grep -i -m1 "^$name==" constraints.txt || true)
    [[ -n $pin ]] || { echo "error: $name is not pinned in constraints.txt" >&2; exit 1; }
    version=${pin#*==}
    # Wheel file names use the normalised project name (lower case, '_' for '-').
    if compgen -G "$WHEELS/${name//-/_}-$version-*.whl" >/dev/null; then
        echo "   $pin: already there"
        continue
    fi
    if ! "$PY" -m pip download -q --no-deps --only-binary=:all: "${PLATFORMS[@]}" \
            -d "$WHEELS" "$pin"; then
        echo "error: could not download $pin for CPython 3.12 manylinux x86_64" >&2
        exit 1
    fi
    echo "   $pin: downloaded"
done
# The wheels must install on the device's CPython 3.12 (checked by tags, without running 3.12).
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
"$PY" -m pip install -q --no-index --no-deps --only-binary=:all: "${PLATFORMS[@]}" \
    --target "$check" "$WHEELS"/*.whl
[[ -f $check/_soundfile_data/libsndfile_x86_64.so ]] || {
    echo "error: the soundfile wheel does not bundle libsndfile" >&2; exit 1; }
ls -l "$WHEELS"

bytes=$(du -sbc "$DATA" "$WHEELS" | tail -1 | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "== carried: $bytes bytes (~$mib MiB) besides the working tree"
(( mib <= MAX_CARRY_MIB )) || { echo "error: over $MAX_CARRY_MIB MiB" >&2; exit 1; }
echo "carry: [\"$DATA\", \"$WHEELS\"]"
