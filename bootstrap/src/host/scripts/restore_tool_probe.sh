# host script: restore-tool-probe
# Whether the restore tool can bump the revision (etcdutl 3.5.10 and later).
echo "tool=$tool"
if "$tool" snapshot restore --help 2>&1 | grep -q -- --bump-revision; then echo bump=yes; else echo bump=no; fi
