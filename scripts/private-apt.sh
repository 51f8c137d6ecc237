# Sourced by the fetch-* scripts: a private apt configuration under .debian-apt/ that only downloads
# and unpacks from Debian's unstable archive. apt's ordinary trust chain applies (the InRelease signed
# by a key of /usr/share/keyrings/debian-archive-keyring.gpg, then the Packages index, then each
# .deb's SHA256). Nothing is installed: own sources list, own lists and cache, an empty dpkg status
# (host packages do not matter), so no system apt list, cache or status changes.
# Defines: PRIVATE_APT (apt options), private_apt_update (refreshes the index at most twice a
# day; returns 1 when the archive does not answer), private_apt_refresh_or_keep, private_apt_candidate,
# private_apt_unpack.
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PRIVATE_APT_DIR="$PWD/.debian-apt"
[ -r "$KEYRING" ] || { echo "$KEYRING is missing (Debian's package debian-archive-keyring): it is what the archive's signature is checked against" >&2; exit 1; }
mkdir -p "$PRIVATE_APT_DIR"/etc/{apt.conf.d,preferences.d,sources.list.d} \
  "$PRIVATE_APT_DIR/state/lists/partial" "$PRIVATE_APT_DIR/cache/archives/partial"
echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian unstable main" > "$PRIVATE_APT_DIR/etc/sources.list"
: > "$PRIVATE_APT_DIR/state/status"
PRIVATE_APT=(-o "Dir::Etc::SourceList=$PRIVATE_APT_DIR/etc/sources.list"
  -o "Dir::Etc::SourceParts=$PRIVATE_APT_DIR/etc/sources.list.d"
  -o "Dir::Etc::Parts=$PRIVATE_APT_DIR/etc/apt.conf.d" -o "Dir::Etc::Preferences=$PRIVATE_APT_DIR/etc/preferences"
  -o "Dir::Etc::PreferencesParts=$PRIVATE_APT_DIR/etc/preferences.d" -o "Dir::State=$PRIVATE_APT_DIR/state"
  -o "Dir::State::status=$PRIVATE_APT_DIR/state/status" -o "Dir::Cache=$PRIVATE_APT_DIR/cache"
  -o "Debug::NoLocking=1" -o "APT::Architecture=amd64" -o "APT::Sandbox::User=root")

# the index, at most twice a day (a test run should not fetch 11 MB each time)
private_apt_update() {
  [ -n "$(find "$PRIVATE_APT_DIR/state/lists" -name '*_Packages' -mmin -720 2>/dev/null)" ] && return 0
  apt-get "${PRIVATE_APT[@]}" -qq update >&2
}

# private_apt_candidate PACKAGE: the version apt would take, or nothing
private_apt_candidate() {
  local v
  v=$(apt-cache "${PRIVATE_APT[@]}" policy "$1" | sed -n 's/^  Candidate: //p')
  [ "$v" = "(none)" ] || printf '%s' "$v"
}

# private_apt_unpack DIR PKG=VERSION...: downloads the packages into DIR (apt checks each .deb
# against the signed index) and unpacks them into DIR/root; nothing is installed.
private_apt_unpack() {
  local dir=$1
  shift
  (cd "$dir" && apt-get "${PRIVATE_APT[@]}" -qq download "$@" >&2) || return 1
  for deb in "$dir"/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
}

# private_apt_refresh_or_keep NAME FILE WHAT: refreshes the index; when the archive does not answer,
# keeps the earlier copy (FILE is there: exit 0 with a note) or fails naming WHAT.
private_apt_refresh_or_keep() {
  private_apt_update && return 0
  if [ -e "$2" ]; then
    echo "$1: Debian's archive did not answer; keeping $3" >&2
    exit 0
  fi
  echo "$1: Debian's archive (deb.debian.org) did not answer, and there is no earlier copy in $3" >&2
  exit 1
}
