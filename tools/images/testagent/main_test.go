package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTwoListenersShareOnePort(t *testing.T) {
	first, err := listenReusePort(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	port := first.Addr().(*net.TCPAddr).Port
	second, err := listenReusePort(context.Background(), first.Addr().String())
	if err != nil {
		t.Fatalf("second listener on port %d: %v", port, err)
	}
	second.Close()
}

func TestCheckFollowsTheMarker(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ready")
	var stderr bytes.Buffer
	if code := run([]string{"check", "--marker", marker}, &bytes.Buffer{}, &stderr); code != 1 {
		t.Fatalf("check without marker = %d, want 1", code)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := run([]string{"check", "--marker", marker}, &bytes.Buffer{}, &stderr); code != 0 {
		t.Fatalf("check with marker = %d, want 0", code)
	}
}

func TestPostStartWritesItsMarker(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "poststart")
	if code := run([]string{"poststart", "--marker", marker}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("poststart = %d", code)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal(err)
	}
}

func TestBrokenRefusesToStart(t *testing.T) {
	t.Setenv("AGENT_BROKEN", "deliberately broken")
	var stderr bytes.Buffer
	if code := run([]string{"serve"}, &bytes.Buffer{}, &stderr); code != 1 {
		t.Fatalf("broken serve = %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "deliberately broken") {
		t.Fatalf("stderr %q does not say why", stderr.String())
	}
}

func TestSleepEndsAfterItsDuration(t *testing.T) {
	if code := run([]string{"sleep", "10ms"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("sleep = %d", code)
	}
}

func TestUnknownCommand(t *testing.T) {
	if code := run([]string{"dance"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
		t.Fatalf("unknown command = %d, want 2", code)
	}
}
