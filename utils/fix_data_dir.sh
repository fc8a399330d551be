#!/usr/bin/env bash
# utils/fix_data_dir.sh -- make a Kaldi-style data directory consistent.
#
# Usage: utils/fix_data_dir.sh DATA
#
# DATA must contain utt2spk and wav.scp; text, segments, utt2dur, feats.scp,
# utt2num_frames, utt2num_samples (and utt2lang, utt2uniq, utt2sid, utt2lid, utt2category) are
# used when present. The script
#   * strips carriage returns and leading/trailing blanks, drops blank lines,
#     sorts every file with LC_ALL=C on the first field and keeps only the
#     first line of any duplicated id;
#   * drops utterances whose transcript in text is empty (only the id);
#   * keeps only the utterances present in every per-utterance file (with
#     segments, wav.scp is per recording: utterances whose recording is not
#     in wav.scp are dropped, and recordings no utterance uses are dropped);
#   * keeps per-speaker files (spk2gender, spk2lang) for remaining speakers
#     and regenerates spk2utt from utt2spk.
# What was removed, and which file lacked it, is reported on stderr. The
# original files are copied to DATA/.backup/ first; each new file is written
# under a temporary name inside DATA and then renamed into place. If no
# utterance would remain, nothing is changed and the exit status is 1.
set -euo pipefail
export LC_ALL=C

prog=fix_data_dir.sh
utils=$(cd "$(dirname "$0")" && pwd)

usage() {
  echo "Usage: utils/$prog DATA" >&2
  echo "  e.g.: utils/$prog data/train" >&2
  exit 1
}
die() {
  echo "$prog: $*" >&2
  exit 1
}

[ $# -eq 1 ] || usage
case $1 in -*) usage ;; esac
data=${1%/}
[ -d "$data" ] || die "directory $data does not exist"
[ -f "$data/utt2spk" ] || die "$data/utt2spk does not exist"
[ -f "$data/wav.scp" ] || die "$data/wav.scp does not exist"

utt_level="utt2spk text segments utt2dur utt2num_frames utt2num_samples feats.scp utt2lang utt2uniq utt2sid utt2lid utt2category"
reco_level="reco2dur reco2file_and_channel"
spk_level="spk2gender spk2lang"
if [ -f "$data/segments" ]; then
  reco_level="wav.scp $reco_level"
else
  utt_level="wav.scp $utt_level"
fi

tmp=$(mktemp -d "$data/.fix_data_dir.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Clean + sort one file: no CRs, no blank lines, no outer blanks, unique ids.
normalize() {
  local f=$1
  tr -d '\r' < "$data/$f" \
    | awk '{ sub(/^[ \t]+/, ""); sub(/[ \t]+$/, ""); if ($0 != "") print }' \
    | sort -s -k1,1 \
    | awk -v msg="$prog: $data/$f: dropped duplicate lines for ids:" '
        seen[$1]++ { dup = dup " " $1; next } { print }
        END { if (dup != "") print msg dup | "cat 1>&2" }' > "$tmp/$f"
}

present_utt=()
for f in $utt_level; do
  if [ -f "$data/$f" ]; then
    normalize "$f"
    present_utt+=("$f")
  fi
done
present_other=()
for f in $reco_level $spk_level; do
  if [ -f "$data/$f" ]; then
    normalize "$f"
    present_other+=("$f")
  fi
done

# Empty transcripts.
: > "$tmp/.empty_text"
if [ -f "$tmp/text" ]; then
  awk 'NF < 2 { print $1 }' "$tmp/text" > "$tmp/.empty_text"
  awk 'NF >= 2' "$tmp/text" > "$tmp/.text" && mv "$tmp/.text" "$tmp/text"
  n=$(wc -l < "$tmp/.empty_text")
  if [ "$n" -gt 0 ]; then
    more=
    if [ "$n" -gt 10 ]; then more=...; fi
    echo "$prog: removed $n utterance(s) with an empty transcript in $data/text:" \
      $(head -n 10 "$tmp/.empty_text") $more >&2
  fi
fi

# With segments, an utterance also needs its recording in wav.scp.
files=()
names=()
for f in "${present_utt[@]}"; do
  files+=("$tmp/$f")
  names+=("$data/$f")
done
if [ -f "$tmp/segments" ]; then
  awk 'NR == FNR { reco[$1] = 1; next } ($2 in reco) { print $1 }' \
    "$tmp/wav.scp" "$tmp/segments" > "$tmp/.utts_with_reco"
  files+=("$tmp/.utts_with_reco")
  names+=("$data/wav.scp (recording of the segment)")
fi

# Intersection of the ids; report what each file lacked.
printf '%s\n' "${names[@]}" > "$tmp/.names"
awk -v prog="$prog" -v names="$tmp/.names" -v empties="$tmp/.empty_text" \
    -v kept="$tmp/.kept" '
  BEGIN {
    while ((getline line < names) > 0) name[++nn] = line
    while ((getline line < empties) > 0) empty[line] = 1
  }
  FNR == 1 { fi++; istext[fi] = (name[fi] ~ /\/text$/) }
  {
    if (!(($1) in any)) { any[$1] = 1; order[++n] = $1 }
    has[fi, $1] = 1
    cnt[$1]++
  }
  END {
    for (i = 1; i <= fi; i++) {
      m = 0; list = ""
      for (j = 1; j <= n; j++) {
        u = order[j]
        if (!((i, u) in has) && !(istext[i] && (u in empty))) {
          m++
          if (m <= 10) list = list " " u
        }
      }
      if (m > 0) {
        if (m > 10) list = list " ..."
        printf "%s: removed %d utterance(s) missing from %s:%s\n", prog, m, name[i], list | "cat 1>&2"
      }
    }
    k = 0
    for (j = 1; j <= n; j++) if (cnt[order[j]] == fi) { print order[j] > kept; k++ }
    if (k == 0) printf "" > kept
  }' "${files[@]}"
sort -o "$tmp/.kept" "$tmp/.kept"

# Count over all ids seen anywhere (including empty transcripts).
total=$(cat "${files[@]}" "$tmp/.empty_text" | awk '{ print $1 }' | sort -u | wc -l)
nkept=$(wc -l < "$tmp/.kept")
if [ "$nkept" -eq 0 ]; then
  die "no utterance is present in all files of $data; nothing was changed"
fi

# Filter the per-utterance files.
for f in "${present_utt[@]}"; do
  "$utils/filter_scp.pl" "$tmp/.kept" "$tmp/$f" > "$tmp/$f.new"
done

# Per-recording files (only with segments).
if [ -f "$tmp/segments" ]; then
  awk '{ print $2 }' "$tmp/segments.new" | sort -u > "$tmp/.recos"
  for f in $reco_level; do
    if [ -f "$tmp/$f" ]; then
      "$utils/filter_scp.pl" "$tmp/.recos" "$tmp/$f" > "$tmp/$f.new"
      nr=$(( $(wc -l < "$tmp/$f") - $(wc -l < "$tmp/$f.new") ))
      if [ "$nr" -gt 0 ]; then
        echo "$prog: removed $nr unused recording(s) from $data/$f" >&2
      fi
    fi
  done
else
  for f in $reco_level; do
    if [ -f "$tmp/$f" ]; then cp "$tmp/$f" "$tmp/$f.new"; fi
  done
fi

# Per-speaker files.
"$utils/utt2spk_to_spk2utt.pl" "$tmp/utt2spk.new" | sort -k1,1 > "$tmp/spk2utt.new"
awk '{ print $1 }' "$tmp/spk2utt.new" > "$tmp/.spks"
for f in $spk_level; do
  if [ -f "$tmp/$f" ]; then
    "$utils/filter_scp.pl" "$tmp/.spks" "$tmp/$f" > "$tmp/$f.new"
  fi
done

# Back up the originals, then rename the new files into place.
mkdir -p "$data/.backup"
for f in "${present_utt[@]}" "${present_other[@]}" spk2utt; do
  if [ -f "$data/$f" ]; then cp -p "$data/$f" "$data/.backup/$f"; fi
done
for f in "${present_utt[@]}" "${present_other[@]}" spk2utt; do
  if [ -f "$tmp/$f.new" ]; then mv -f "$tmp/$f.new" "$data/$f"; fi
done

echo "$prog: kept $nkept of $total utterances in $data ($((total - nkept)) removed);" \
  "old files are in $data/.backup" >&2
exit 0
