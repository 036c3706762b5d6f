# Sourced by the scripts that take packages from Debian trixie (scripts/vm_setup_trixie.sh,
# scripts/uapi_headers_trixie.sh): apt with a private sources list and lists directory in
# tests/vm/.cache-trixie/apt, so the host's apt configuration is never changed.
trixie_apt_dir=tests/vm/.cache-trixie/apt
mkdir -p "$trixie_apt_dir/lists/partial" "$trixie_apt_dir/cache"
trixie_apt_dir=$(realpath "$trixie_apt_dir")
cat >"$trixie_apt_dir/trixie.list" <<LIST
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
LIST
apt_trixie=(-o "Dir::Etc::SourceList=$trixie_apt_dir/trixie.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$trixie_apt_dir/lists" -o "Dir::Cache=$trixie_apt_dir/cache"
  -o "Dir::State::status=/dev/null" -o "APT::Get::List-Cleanup=0")

# The package that PACKAGE depends on whose name matches PATTERN (trixie's lists are fetched once).
trixie_depends() {
  local found
  found=$(apt-cache "${apt_trixie[@]}" depends "$1" 2>/dev/null | awk -v p="Depends: $2" '$0 ~ p {print $2; exit}')
  if [ -z "$found" ]; then
    apt-get "${apt_trixie[@]}" update -qq
    found=$(apt-cache "${apt_trixie[@]}" depends "$1" | awk -v p="Depends: $2" '$0 ~ p {print $2; exit}')
  fi
  [ -n "$found" ] || { echo "trixie_apt: trixie's $1 depends on nothing like $2" >&2; return 1; }
  echo "$found"
}

# The candidate version of PACKAGE in trixie (the lists are fetched once).
trixie_version() {
  local version
  version=$(apt-cache "${apt_trixie[@]}" policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    apt-get "${apt_trixie[@]}" update -qq
    version=$(apt-cache "${apt_trixie[@]}" policy "$1" | awk '/Candidate:/ {print $2}')
  fi
  echo "$version"
}

# Downloads trixie's PACKAGE .deb into DIRECTORY.
trixie_download() {
  mkdir -p "$2"
  (cd "$2" && apt-get "${apt_trixie[@]}" download "$1" 2>&1 |
    grep -v "^W: Download is performed unsandboxed" >&2 || true)
  ls "$2"/"$1"_*.deb >/dev/null
}
