package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// prepareStoreCmd makes a filesystem checkpoint store's directory
// writable by the PE's user. A hostPath directory is created by the
// kubelet as root, and the PE runs as a non-root user, so a PE pod with
// such a store runs this first, as root, in an init container (the image
// has nothing else: it is FROM scratch).
func prepareStoreCmd(args []string) error {
	fs := flag.NewFlagSet("prepare-store", flag.ExitOnError)
	path := fs.String("path", "", "the store's directory")
	owner := fs.String("owner", "", "UID:GID that must own it")
	fs.Parse(args)
	if *path == "" || *owner == "" {
		return errors.New("prepare-store: --path and --owner are required")
	}
	uid, gid, err := parseOwner(*owner)
	if err != nil {
		return err
	}
	return prepareStore(*path, uid, gid)
}

func parseOwner(s string) (uid, gid int, err error) {
	u, g, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("prepare-store: --owner %q: want UID:GID", s)
	}
	if uid, err = strconv.Atoi(u); err != nil || uid < 0 {
		return 0, 0, fmt.Errorf("prepare-store: --owner %q: bad UID", s)
	}
	if gid, err = strconv.Atoi(g); err != nil || gid < 0 {
		return 0, 0, fmt.Errorf("prepare-store: --owner %q: bad GID", s)
	}
	return uid, gid, nil
}

// prepareStore creates path if needed and gives it to uid:gid. Only the
// directory itself: what a PE wrote there is already its own.
func prepareStore(path string, uid, gid int) error {
	if err := os.MkdirAll(path, 0o750); err != nil {
		return fmt.Errorf("prepare-store: %w", err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("prepare-store: %w", err)
	}
	return nil
}
