# host script: daemon-reload
systemctl daemon-reload
