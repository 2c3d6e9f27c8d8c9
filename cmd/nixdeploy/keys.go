package main

import "context"

// cmdKeys is implemented in a following change; see the keys package.
func cmdKeys(ctx context.Context, s stdio, args []string) error {
	return usageErrorf("keys: not built yet")
}
