# host script: file-content
# `content=BASE64` of a file when it is there.
if [ -f "$file" ]; then echo "content=$(base64 -w0 < "$file")"; fi
