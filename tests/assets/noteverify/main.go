// Verifies a signed note (a C2SP checkpoint) with Go's golang.org/x/mod/sumdb/note.
// Usage: noteverify VERIFIER_KEY < note ; exit 0 when it verifies, 1 otherwise.
package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	v, err := note.NewVerifier(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "verifier:", err)
		os.Exit(2)
	}
	msg, _ := io.ReadAll(os.Stdin)
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(1)
	}
	fmt.Print(n.Text)
	for _, s := range n.Sigs {
		fmt.Fprintf(os.Stderr, "verified by %s %08x\n", s.Name, s.Hash)
	}
}
