#!/usr/bin/env bash
# utils/copy_data_dir.sh -- copy a Kaldi-style data directory, optionally
# renaming the utterances.
#
# Usage: utils/copy_data_dir.sh [--utt-prefix P] [--utt-suffix S] SRC DEST
#
# Copies the per-utterance files (utt2spk, text, wav.scp, segments, utt2dur,
# utt2num_frames, utt2num_samples, feats.scp, utt2lang, utt2uniq, utt2sid, utt2lid,
# utt2category) with every utterance id turned into P<id>S and re-sorted
# (LC_ALL=C), copies the per-recording files (wav.scp when segments exists,
# reco2dur, reco2file_and_channel) and per-speaker files (spk2gender,
# spk2lang) unchanged, and regenerates DEST/spk2utt from DEST/utt2spk.
# Speaker ids are not changed. DEST is created if needed.
set -euo pipefail
export LC_ALL=C

prog=copy_data_dir.sh
utils=$(cd "$(dirname "$0")" && pwd)

utt_prefix=
utt_suffix=
help_message="Usage: utils/$prog [--utt-prefix P] [--utt-suffix S] SRC DEST
  e.g.: utils/$prog --utt-prefix sp1.1- data/train data/train_sp1.1"
. "$utils/parse_options.sh"

if [ $# -ne 2 ]; then
  echo "$help_message" >&2
  exit 1
fi
src=${1%/}
dest=${2%/}
[ -f "$src/utt2spk" ] || { echo "$prog: $src/utt2spk does not exist" >&2; exit 1; }
if [ -d "$dest" ] && [ "$(cd "$src" && pwd -P)" = "$(cd "$dest" && pwd -P)" ]; then
  echo "$prog: SRC and DEST are the same directory ($src)" >&2
  exit 1
fi
mkdir -p "$dest"

utt_level="utt2spk text segments utt2dur utt2num_frames utt2num_samples feats.scp utt2lang utt2uniq utt2sid utt2lid utt2category"
other="reco2dur reco2file_and_channel spk2gender spk2lang"
if [ -f "$src/segments" ]; then
  other="wav.scp $other"
else
  utt_level="wav.scp $utt_level"
fi

for f in $utt_level; do
  if [ -f "$src/$f" ]; then
    awk -v p="$utt_prefix" -v s="$utt_suffix" '
      match($0, /^[^ \t]+/) { print p substr($0, 1, RLENGTH) s substr($0, RLENGTH + 1); next }
      { print }' "$src/$f" | sort -k1,1 > "$dest/$f.tmp"
    mv -f "$dest/$f.tmp" "$dest/$f"
  else
    rm -f "$dest/$f"
  fi
done
for f in $other; do
  if [ -f "$src/$f" ]; then
    cp "$src/$f" "$dest/$f"
  else
    rm -f "$dest/$f"
  fi
done
"$utils/utt2spk_to_spk2utt.pl" "$dest/utt2spk" | sort -k1,1 > "$dest/spk2utt.tmp"
mv -f "$dest/spk2utt.tmp" "$dest/spk2utt"
echo "$prog: copied $src to $dest ($(wc -l < "$dest/utt2spk") utterances)" >&2
