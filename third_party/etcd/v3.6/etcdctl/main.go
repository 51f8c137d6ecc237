// etcdctl, as etcd's own etcdctl/main.go starts it.
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() {
	ctlv3.MustStart()
}
