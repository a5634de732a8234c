// Command etcd is etcd's own server entry point, built from the Go module proxy
// so that tests need no download from a release page.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
