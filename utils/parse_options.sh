#!/usr/bin/env bash
# utils/parse_options.sh -- command-line option parsing for recipe scripts.
#
# Usage (inside a bash script, after the defaults are defined):
#     stage=1
#     stop_stage=100
#     use_gpu=false
#     help_message="Usage: $0 [options] <data-dir>"
#     . utils/parse_options.sh || exit 1
#     # "$@" now holds the positional arguments only
#
# Rules:
#   --name value / --name=value  set the caller's variable "name"; dashes in
#                                the option name become underscores
#                                (--stop-stage 3 sets stop_stage=3).
#                                The variable must already be defined.
#   boolean variables            if the current value is true or false, the
#                                new value must also be true or false.
#   --config FILE                FILE is sourced (it must exist) before the
#                                other options are applied, so options given
#                                on the command line win over the file.
#   --help, -h                   print $help_message and exit 0.
#   --                           end of options (removed from "$@").
# Parsing stops at the first argument that is not an option; it and every
# argument after it stay in "$@". On error a message goes to stderr and the
# calling script exits with status 1.
#
# This file is meant to be sourced, not executed. All internal names start
# with __po_ so that they do not collide with the caller's variables.

__po_prog=$(basename -- "$0")

__po_die() {
  echo "$__po_prog: $*" >&2
  exit 1
}

# Split one option token into __po_name / __po_value / __po_has_value.
__po_split() {
  local __po_tok=${1#--}
  if [[ $__po_tok == *=* ]]; then
    __po_name=${__po_tok%%=*}
    __po_value=${__po_tok#*=}
    __po_has_value=true
  else
    __po_name=$__po_tok
    __po_value=
    __po_has_value=false
  fi
}

# Pass 1: find --config options (up to the first positional argument) and
# source the files, so that later command-line options override them.
__po_i=1
while [ "$__po_i" -le $# ]; do
  __po_arg=${!__po_i}
  case $__po_arg in
    --) break ;;
    --help|-h) __po_i=$((__po_i + 1)) ;;
    --?*)
      __po_split "$__po_arg"
      if ! $__po_has_value; then
        __po_i=$((__po_i + 1))
        if [ "$__po_i" -gt $# ]; then
          __po_die "option --$__po_name needs a value"
        fi
        __po_value=${!__po_i}
      fi
      if [ "$__po_name" = config ]; then
        [ -n "$__po_value" ] || __po_die "option --config needs a file name"
        [ -f "$__po_value" ] || __po_die "config file '$__po_value' does not exist"
        # shellcheck disable=SC1090
        . "$__po_value" || __po_die "failed to source config file '$__po_value'"
      fi
      __po_i=$((__po_i + 1))
      ;;
    *) break ;;
  esac
done

# Pass 2: apply the options in order.
while [ $# -gt 0 ]; do
  case $1 in
    --)
      shift
      break
      ;;
    --help|-h)
      if [ -n "${help_message+x}" ]; then
        printf '%s\n' "$help_message"
      else
        echo "$__po_prog: no help message is available for this script" >&2
      fi
      exit 0
      ;;
    --?*)
      __po_split "$1"
      __po_opt=$__po_name
      if $__po_has_value; then
        shift
      else
        [ $# -ge 2 ] || __po_die "option --$__po_opt needs a value"
        __po_value=$2
        shift 2
      fi
      [ "$__po_opt" = config ] && continue
      __po_var=${__po_opt//-/_}
      if ! [[ $__po_var =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
        __po_die "invalid option --$__po_opt"
      fi
      if [ -z "${!__po_var+x}" ]; then
        __po_die "unknown option --$__po_opt (no variable '$__po_var' is defined by this script)"
      fi
      __po_old=${!__po_var}
      if [ "$__po_old" = true ] || [ "$__po_old" = false ]; then
        if [ "$__po_value" != true ] && [ "$__po_value" != false ]; then
          __po_die "option --$__po_opt expects true or false, got '$__po_value'"
        fi
      fi
      printf -v "$__po_var" '%s' "$__po_value"
      ;;
    *)
      break
      ;;
  esac
done

unset __po_i __po_arg __po_name __po_value __po_has_value __po_opt __po_var __po_old __po_prog
unset -f __po_die __po_split
true
