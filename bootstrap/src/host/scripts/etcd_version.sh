# host script: version
# What the member's etcd binary says to --version (its first line names the version).
"$binary" --version 2>/dev/null
