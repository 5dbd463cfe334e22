package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestPrepareStoreOwnsTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ns", "store")
	// Our own IDs: a test cannot chown to another user unless it is root.
	uid, gid := os.Getuid(), os.Getgid()
	if err := prepareStore(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("%s: %v", dir, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Fatalf("owner %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
	if os.Getuid() == 0 {
		if err := prepareStore(dir, 65532, 65532); err != nil {
			t.Fatal(err)
		}
		fi, _ = os.Stat(dir)
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65532 || st.Gid != 65532 {
			t.Fatalf("as root: owner %d:%d, want 65532:65532", st.Uid, st.Gid)
		}
	}
	for _, bad := range []string{"65532", "a:1", "1:-2", ""} {
		if _, _, err := parseOwner(bad); err == nil {
			t.Errorf("owner %q accepted", bad)
		}
	}
}
