# host script: lb-probe
# `check lb` from a control-plane node: a TCP connect to the load balancer (bash's /dev/tcp,
# bounded by timeout(1)), whether it closes at once, and, when curl is there, GET /readyz verified
# against the CA (written to a private temporary). Prints one `seen=...` line.
set -u
h=$lb_host; p=$lb_port; t=$timeout_secs
command -v timeout >/dev/null 2>&1 || { echo "seen=unreachable:no timeout(1) on the node"; exit 0; }
# shellcheck disable=SC2016 # $0 and $1 are the inner bash's
err=$(timeout "$t" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$h" "$p" 2>&1 >/dev/null); rc=$?
if [ "$rc" = 124 ]; then echo seen=timeout; exit 0; fi
case "$err" in *refused*) echo seen=refused; exit 0;; esac
if [ "$rc" != 0 ]; then echo "seen=unreachable:$(printf '%s' "$err" | tr -d '\n' | cut -c1-200)"; exit 0; fi
# the LB with no healthy backend closes right after accepting; a TLS server waits
# shellcheck disable=SC2016 # $0 and $1 are the inner bash's
if timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"; cat <&3 >/dev/null' "$h" "$p" 2>/dev/null; then echo seen=closed; exit 0; fi
command -v curl >/dev/null 2>&1 || { echo seen=open; exit 0; }
ca=$(mktemp); errf=$(mktemp); trap 'rm -f "$ca" "$errf"' EXIT
printf '%s' "$ca_pem" > "$ca"
case "$h" in *:*) url="https://[$h]:$p/readyz";; *) url="https://$h:$p/readyz";; esac
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time "$t" --cacert "$ca" "$url" 2>"$errf"); rc=$?
why=$(head -c 300 "$errf" | tr -d '\n')
case "$rc" in
  0) echo "seen=readyz:$code";;
  35|51|58|60|77|83|90|91) echo "seen=untrusted:curl: $why";;
  28) echo seen=no-tls-answer;;
  52|56) echo seen=closed;;
  *) echo "seen=unreachable:curl: $why";;
esac
