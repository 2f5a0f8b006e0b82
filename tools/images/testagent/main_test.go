package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

func TestServeAnswersBecomesReadyAndStopsOnSignal(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	marker := filepath.Join(t.TempDir(), "ready")
	t.Setenv("AGENT_VERSION", "v9")
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"serve", "--port", strconv.Itoa(port), "--ready-delay", "100ms",
			"--marker", marker}, io.Discard, io.Discard)
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 5s (last error %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("ready but no marker: %v", err)
	}
	resp, err := http.Get(base + "/version")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != "v9" {
		t.Fatalf("/version = %q, want v9", body)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d after SIGTERM, want 0", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not stop within 5s of SIGTERM")
	}
}
