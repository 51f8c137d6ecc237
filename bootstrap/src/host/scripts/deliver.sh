# host script: deliver
# Files (paths, modes, base64 contents) put atomically: every file is staged (an unpredictable
# temporary made with O_EXCL by mktemp, never through a planted symlink, carrying pki's leftover
# mark) before the first rename, the renames follow one another, and the report comes last: a
# caller that dies midway (SIGPIPE and SIGHUP are ignored) never leaves a certificate renewed
# beside its old key. Identical files are left alone.
set -eu
umask 077
trap '' PIPE HUP
src=(); dst=(); report=()
stage() {
  local d tmp
  d=$(dirname -- "$1")
  mkdir -p -- "$d"
  tmp=$(mktemp -- "$d/.$(basename -- "$1").pki-tmp-XXXXXXXXXXXXXXXX")
  printf '%s' "$3" | base64 -d > "$tmp"
  chmod "$2" "$tmp"
  # a file replaced in place keeps its owner (a key etcd reads as its own user)
  if [ -e "$1" ]; then chown --reference="$1" -- "$tmp" 2>/dev/null || true; fi
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
    rm -f -- "$tmp"; report+=("unchanged $1")
  else
    src+=("$tmp"); dst+=("$1"); report+=("written $1")
  fi
}
for i in "${!paths[@]}"; do stage "${paths[$i]}" "${modes[$i]}" "${contents[$i]}"; done
for i in "${!src[@]}"; do mv -f -- "${src[$i]}" "${dst[$i]}"; done
[ ${#report[@]} -eq 0 ] || printf '%s\n' "${report[@]}"
