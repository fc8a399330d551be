#!/usr/bin/env bash
# utils/combine_data.sh -- merge several data directories into one.
#
# Usage: utils/combine_data.sh DEST SRC1 SRC2 ...
#
# Every SRC must have utt2spk. Each per-utterance file (utt2spk, text,
# wav.scp, segments, utt2dur, utt2num_frames, utt2num_samples, feats.scp, utt2lang, utt2uniq,
# utt2sid, utt2lid, utt2category) is concatenated over the sources and sorted
# with LC_ALL=C; a file that only some of the sources have is skipped with a
# warning (segments must be in all sources or in none). An utterance id that
# occurs in more than one source is an error. Per-recording (wav.scp with
# segments, reco2dur, reco2file_and_channel) and per-speaker files (spk2gender,
# spk2lang) may repeat an id only with identical lines. DEST/spk2utt is
# regenerated from DEST/utt2spk.
set -euo pipefail
export LC_ALL=C

prog=combine_data.sh
utils=$(cd "$(dirname "$0")" && pwd)

die() {
  echo "$prog: $*" >&2
  exit 1
}
if [ $# -lt 2 ] || [[ $1 == -* ]]; then
  echo "Usage: utils/$prog DEST SRC1 SRC2 ..." >&2
  echo "  e.g.: utils/$prog data/train data/train_a data/train_b" >&2
  exit 1
fi
dest=${1%/}
shift
srcs=()
for s in "$@"; do
  s=${s%/}
  [ -f "$s/utt2spk" ] || die "$s/utt2spk does not exist"
  if [ -d "$dest" ] && [ "$(cd "$s" && pwd -P)" = "$(cd "$dest" && pwd -P)" ]; then
    die "DEST $dest is also a source"
  fi
  srcs+=("$s")
done

nseg=0
for s in "${srcs[@]}"; do
  if [ -f "$s/segments" ]; then nseg=$((nseg + 1)); fi
done
if [ "$nseg" -ne 0 ] && [ "$nseg" -ne ${#srcs[@]} ]; then
  die "segments exists in only $nseg of ${#srcs[@]} sources; cannot combine"
fi

utt_level="utt2spk text segments utt2dur utt2num_frames utt2num_samples feats.scp utt2lang utt2uniq utt2sid utt2lid utt2category"
shared="reco2dur reco2file_and_channel spk2gender spk2lang"
if [ "$nseg" -gt 0 ]; then
  shared="wav.scp $shared"
else
  utt_level="wav.scp $utt_level"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# have_all FILE: succeeds if every source has FILE; warns if only some do.
have_all() {
  local f=$1 n=0 s missing=""
  for s in "${srcs[@]}"; do
    if [ -f "$s/$f" ]; then n=$((n + 1)); else missing="$missing $s"; fi
  done
  if [ "$n" -eq ${#srcs[@]} ]; then return 0; fi
  if [ "$n" -gt 0 ]; then
    echo "$prog: warning: not combining $f: missing from$missing" >&2
  fi
  return 1
}

for f in $utt_level; do
  if have_all "$f"; then
    for s in "${srcs[@]}"; do cat "$s/$f"; done | awk 'NF > 0' | sort -k1,1 > "$tmp/$f"
    dups=$(awk '{ print $1 }' "$tmp/$f" | uniq -d | head -n 5 | tr '\n' ' ')
    if [ -n "$dups" ]; then
      die "duplicate utterance id(s) in $f across the sources: $dups"
    fi
  fi
done
for f in $shared; do
  if have_all "$f"; then
    for s in "${srcs[@]}"; do cat "$s/$f"; done | awk 'NF > 0' | sort -u | sort -s -k1,1 > "$tmp/$f"
    dups=$(awk '{ print $1 }' "$tmp/$f" | uniq -d | head -n 5 | tr '\n' ' ')
    if [ -n "$dups" ]; then
      die "id(s) with conflicting lines in $f across the sources: $dups"
    fi
  fi
done
[ -f "$tmp/utt2spk" ] || die "internal error: no utt2spk"

mkdir -p "$dest"
for f in $utt_level $shared spk2utt; do
  rm -f "$dest/$f"
  if [ -f "$tmp/$f" ]; then mv -f "$tmp/$f" "$dest/$f"; fi
done
"$utils/utt2spk_to_spk2utt.pl" "$dest/utt2spk" | sort -k1,1 > "$dest/spk2utt"
echo "$prog: combined ${#srcs[@]} directories into $dest ($(wc -l < "$dest/utt2spk") utterances)" >&2
