// Command vaultserver is HashiCorp Vault's own command line, built from the Go
// module so the dev stack can run a real Vault server where no release binary
// can be downloaded. It adds nothing to Vault: it only calls its entry point.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
