# host script: remove-file
rm -f -- "$file"
