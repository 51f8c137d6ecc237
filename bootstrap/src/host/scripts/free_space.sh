# host script: free-space
# The free space (KiB) on the filesystem that holds (or will hold) the member's data dir: the
# nearest existing ancestor is asked. Also proves the host answers.
d=$data_dir
while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname -- "$d"); done
echo "free_kib=$(df -Pk -- "$d" | awk 'NR==2 {print $4}')"
