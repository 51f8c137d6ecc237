# host script: package-owner
# `owner=PACKAGE` when a package (dpkg, else rpm) owns the file.
if command -v dpkg >/dev/null 2>&1 && o=$(dpkg -S -- "$file" 2>/dev/null); then echo "owner=${o%%:*}"
elif command -v rpm >/dev/null 2>&1 && o=$(rpm -qf -- "$file" 2>/dev/null); then echo "owner=$o"; fi
true
