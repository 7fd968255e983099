package main

import (
	"fmt"
	"os"
)

func main() {
	dir := ".."
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	objs, err := Validate(dir)
	for _, o := range objs {
		fmt.Println("checked", o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d objects valid\n", len(objs))
}
