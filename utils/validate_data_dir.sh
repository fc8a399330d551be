#!/usr/bin/env bash
# utils/validate_data_dir.sh -- check a Kaldi-style data directory.
#
# Usage: utils/validate_data_dir.sh [--no-text] [--no-feats] DATA
#
#   --no-text    do not require (or check) DATA/text
#   --no-feats   do not check DATA/feats.scp even if it exists
#
# Checks that wav.scp, utt2spk, spk2utt and text (unless --no-text) exist and
# that every file present (these and segments, utt2dur, utt2num_frames, utt2num_samples,
# feats.scp, spk2gender, reco2dur):
#   * is not empty, has no blank lines, no carriage returns, no lines that
#     start with whitespace (ids cannot contain whitespace) and the expected
#     number of fields (e.g. a transcript after the id in text);
#   * is sorted with LC_ALL=C on the id and has no duplicate ids;
# and that the per-utterance files all have the same set of utterance ids
# (wav.scp is per recording when segments exists), and that spk2utt matches
# utt2spk. Audio files are not opened. Every problem is reported on stderr
# with the file and the offending id or line, and the exit status is 1;
# otherwise "validate_data_dir.sh: DATA is OK" is printed.
set -uo pipefail
export LC_ALL=C

prog=validate_data_dir.sh
no_text=false
no_feats=false

usage() {
  echo "Usage: utils/$prog [--no-text] [--no-feats] DATA" >&2
  echo "  e.g.: utils/$prog data/train" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case $1 in
    --no-text) no_text=true; shift ;;
    --no-feats) no_feats=true; shift ;;
    --help|-h) usage ;;
    --) shift; break ;;
    -*) echo "$prog: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || usage
data=${1%/}
[ -d "$data" ] || { echo "$prog: directory $data does not exist" >&2; exit 1; }

nerr=0
hint="(try utils/fix_data_dir.sh $data)"
err() {
  echo "$prog: ERROR: $* $hint" >&2
  nerr=$((nerr + 1))
}
# List up to 5 ids from stdin, plus "..." when there are more.
some() {
  awk 'NR <= 5 { printf " %s", $0 } END { if (NR > 5) printf " ..."; }'
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# check_file NAME MIN_FIELDS MAX_FIELDS (0 = no maximum)
check_file() {
  local f=$1 min=$2 max=$3 path=$data/$1 out n first
  : > "$tmp/$f.set"
  if [ ! -s "$path" ]; then
    err "$path is empty"
    return
  fi
  out=$(awk -v f="$path" -v min="$min" -v max="$max" '
    /\r/ { printf "%s line %d (id %s) contains a carriage return (DOS line ending)\n", f, NR, $1; next }
    /^[ \t]*$/ { printf "%s line %d is empty\n", f, NR; next }
    /^[ \t]/ { printf "%s line %d starts with whitespace; ids must not contain whitespace: \"%s\"\n", f, NR, $0; next }
    NF < min || (max > 0 && NF > max) {
      if (f ~ /\/text$/ && NF == 1)
        printf "%s line %d: empty transcript for utterance %s\n", f, NR, $1
      else
        printf "%s line %d (id %s) has %d field(s), expected %s\n", f, NR, $1, NF, (max == min ? min : (max > 0 ? min "-" max : "at least " min))
    }' "$path" | head -n 20)
  if [ -n "$out" ]; then
    while IFS= read -r line; do err "$line"; done <<< "$out"
  fi
  awk 'NF > 0 { print $1 }' "$path" > "$tmp/$f.keys"
  n=$(sort "$tmp/$f.keys" | uniq -d | wc -l)
  if [ "$n" -gt 0 ]; then
    err "$path has $n duplicate id(s):$(sort "$tmp/$f.keys" | uniq -d | some)"
  fi
  out=$(sort -c "$tmp/$f.keys" 2>&1)
  if [ $? -ne 0 ]; then
    first=$(sed -n 's/.*:\([0-9][0-9]*\): disorder: .*/\1/p' <<< "$out")
    if [ -n "$first" ]; then
      err "$path is not sorted (LC_ALL=C): line $first (id $(sed -n "${first}p" "$tmp/$f.keys")) is out of order"
    else
      err "$path is not sorted (LC_ALL=C): $out"
    fi
  fi
  sort -u "$tmp/$f.keys" > "$tmp/$f.set"
}

# compare_ids REF_NAME OTHER_NAME: both must have the same id set.
compare_ids() {
  local a=$1 b=$2 n
  n=$(comm -23 "$tmp/$a.set" "$tmp/$b.set" | wc -l)
  if [ "$n" -gt 0 ]; then
    err "$n id(s) in $data/$a are missing from $data/$b:$(comm -23 "$tmp/$a.set" "$tmp/$b.set" | some)"
  fi
  n=$(comm -13 "$tmp/$a.set" "$tmp/$b.set" | wc -l)
  if [ "$n" -gt 0 ]; then
    err "$n id(s) in $data/$b are not in $data/$a:$(comm -13 "$tmp/$a.set" "$tmp/$b.set" | some)"
  fi
}

required="utt2spk spk2utt wav.scp"
$no_text || required="$required text"
for f in $required; do
  if [ ! -f "$data/$f" ]; then
    err "$data/$f does not exist"
  fi
done
if [ "$nerr" -gt 0 ]; then
  exit 1
fi

check_file utt2spk 2 2
check_file spk2utt 2 0
check_file wav.scp 2 0
$no_text || check_file text 2 0

others=""
for spec in "segments 4 4" "utt2dur 2 2" "utt2num_frames 2 2" "utt2num_samples 2 2" "feats.scp 2 2"; do
  set -- $spec
  if [ -f "$data/$1" ]; then
    if [ "$1" = feats.scp ] && $no_feats; then continue; fi
    check_file "$1" "$2" "$3"
    others="$others $1"
  fi
done
for spec in "spk2gender 2 2" "reco2dur 2 2"; do
  set -- $spec
  if [ -f "$data/$1" ]; then check_file "$1" "$2" "$3"; fi
done

# Same utterance ids everywhere.
if [ -f "$data/segments" ]; then
  utt_files="$others"
else
  utt_files="wav.scp $others"
fi
$no_text || utt_files="text $utt_files"
for f in $utt_files; do
  compare_ids utt2spk "$f"
done
if [ -f "$data/segments" ]; then
  awk 'NF >= 2 { print $2 }' "$data/segments" | sort -u > "$tmp/segreco.set"
  n=$(comm -23 "$tmp/segreco.set" "$tmp/wav.scp.set" | wc -l)
  if [ "$n" -gt 0 ]; then
    err "$n recording id(s) used in $data/segments are missing from $data/wav.scp:$(comm -23 "$tmp/segreco.set" "$tmp/wav.scp.set" | some)"
  fi
fi

# spk2utt must be the inverse of utt2spk.
out=$(awk -v a="$data/utt2spk" -v b="$data/spk2utt" '
  FNR == NR { if (NF >= 2) spk[$1] = $2; next }
  {
    for (i = 2; i <= NF; i++) {
      u = $i
      if (u in seen) printf "utterance %s is listed twice in %s\n", u, b
      seen[u] = 1
      if (!(u in spk)) printf "utterance %s is in %s (speaker %s) but not in %s\n", u, b, $1, a
      else if (spk[u] != $1) printf "utterance %s has speaker %s in %s but %s in %s\n", u, $1, b, spk[u], a
    }
  }
  END { for (u in spk) if (!(u in seen)) printf "utterance %s (speaker %s) in %s is missing from %s\n", u, spk[u], a, b }
  ' "$data/utt2spk" "$data/spk2utt" | sort | head -n 20)
if [ -n "$out" ]; then
  while IFS= read -r line; do err "$line"; done <<< "$out"
fi

if [ "$nerr" -gt 0 ]; then
  echo "$prog: $data has $nerr error(s)" >&2
  exit 1
fi
echo "$prog: $data is OK"
exit 0
