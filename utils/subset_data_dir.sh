#!/usr/bin/env bash
# utils/subset_data_dir.sh -- make a data directory holding a subset of the
# utterances of another.
#
# Usage: utils/subset_data_dir.sh --first N SRC DEST
#        utils/subset_data_dir.sh --last N SRC DEST
#        utils/subset_data_dir.sh --utt-list FILE SRC DEST
#
#   --first N        the first N utterances of SRC/utt2spk (LC_ALL=C order)
#   --last N         the last N utterances
#   --utt-list FILE  the utterances whose ids are in the first column of FILE
#                    (ids not in SRC are ignored, with a warning)
# Exactly one of these must be given. The per-utterance files of SRC are
# filtered to the subset, per-recording files (with segments) to the
# recordings still used, per-speaker files to the speakers still present, and
# DEST/spk2utt is regenerated. It is an error if N is larger than the number
# of utterances or if the subset is empty.
set -euo pipefail
export LC_ALL=C

prog=subset_data_dir.sh
utils=$(cd "$(dirname "$0")" && pwd)

first=
last=
utt_list=
help_message="Usage: utils/$prog --first N|--last N|--utt-list FILE SRC DEST
  e.g.: utils/$prog --first 100 data/train data/train_100"
. "$utils/parse_options.sh"

die() {
  echo "$prog: $*" >&2
  exit 1
}
if [ $# -ne 2 ]; then
  echo "$help_message" >&2
  exit 1
fi
nsel=0
[ -z "$first" ] || nsel=$((nsel + 1))
[ -z "$last" ] || nsel=$((nsel + 1))
[ -z "$utt_list" ] || nsel=$((nsel + 1))
if [ "$nsel" -ne 1 ]; then
  echo "$prog: give exactly one of --first, --last, --utt-list" >&2
  echo "$help_message" >&2
  exit 1
fi
src=${1%/}
dest=${2%/}
[ -f "$src/utt2spk" ] || die "$src/utt2spk does not exist"
if [ -d "$dest" ] && [ "$(cd "$src" && pwd -P)" = "$(cd "$dest" && pwd -P)" ]; then
  die "SRC and DEST are the same directory ($src)"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk 'NF > 0 { print $1 }' "$src/utt2spk" | sort -u > "$tmp/all"
total=$(wc -l < "$tmp/all")
if [ -n "$first$last" ]; then
  n=$first$last
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || die "--first/--last expects a positive integer, got '$n'"
  [ "$n" -le "$total" ] || die "asked for $n utterances but $src has only $total"
  if [ -n "$first" ]; then
    head -n "$n" "$tmp/all" > "$tmp/ids"
  else
    tail -n "$n" "$tmp/all" > "$tmp/ids"
  fi
else
  [ -f "$utt_list" ] || die "utterance list $utt_list does not exist"
  awk 'NF > 0 { print $1 }' "$utt_list" | sort -u > "$tmp/wanted"
  comm -12 "$tmp/all" "$tmp/wanted" > "$tmp/ids"
  nmiss=$(comm -13 "$tmp/all" "$tmp/wanted" | wc -l)
  if [ "$nmiss" -gt 0 ]; then
    echo "$prog: warning: $nmiss id(s) of $utt_list are not in $src/utt2spk and were ignored" >&2
  fi
  [ -s "$tmp/ids" ] || die "no utterance of $utt_list is in $src"
fi

mkdir -p "$dest"
utt_level="utt2spk text segments utt2dur utt2num_frames utt2num_samples feats.scp utt2lang utt2uniq utt2sid utt2lid utt2category"
reco_level="reco2dur reco2file_and_channel"
spk_level="spk2gender spk2lang"
if [ -f "$src/segments" ]; then
  reco_level="wav.scp $reco_level"
else
  utt_level="wav.scp $utt_level"
fi

for f in $utt_level $reco_level $spk_level spk2utt; do
  rm -f "$dest/$f"
done
for f in $utt_level; do
  if [ -f "$src/$f" ]; then
    "$utils/filter_scp.pl" "$tmp/ids" "$src/$f" | sort -k1,1 > "$dest/$f"
  fi
done
if [ -f "$src/segments" ]; then
  awk '{ print $2 }' "$dest/segments" | sort -u > "$tmp/recos"
  for f in $reco_level; do
    if [ -f "$src/$f" ]; then
      "$utils/filter_scp.pl" "$tmp/recos" "$src/$f" | sort -k1,1 > "$dest/$f"
    fi
  done
else
  for f in $reco_level; do
    if [ -f "$src/$f" ]; then cp "$src/$f" "$dest/$f"; fi
  done
fi
"$utils/utt2spk_to_spk2utt.pl" "$dest/utt2spk" | sort -k1,1 > "$dest/spk2utt"
awk '{ print $1 }' "$dest/spk2utt" > "$tmp/spks"
for f in $spk_level; do
  if [ -f "$src/$f" ]; then
    "$utils/filter_scp.pl" "$tmp/spks" "$src/$f" | sort -k1,1 > "$dest/$f"
  fi
done
echo "$prog: wrote $(wc -l < "$dest/utt2spk") of $total utterances of $src to $dest" >&2
