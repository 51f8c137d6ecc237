# host library: is_etcd
# True for a live (not zombie) process named etcd: `kill -0` alone also succeeds on a zombie
# and on an unrelated process that reused the PID.
is_etcd() { [ -r "/proc/$1/stat" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = etcd ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
