# host script: remove-drop-in
# The joiner drop-in `replace` gave an adopted unit, removed once it has joined (its folder too,
# when empty), and systemd told.
set -eu
if [ -e "$file" ]; then
  rm -f -- "$file"
  rmdir -- "$(dirname -- "$file")" 2>/dev/null || true
  systemctl daemon-reload
fi
