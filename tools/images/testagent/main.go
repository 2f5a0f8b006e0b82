// Command testagent is the sidecar the real-node tests run: one static binary, several roles.
//
//	testagent serve [--port P] [--ready-delay D] [--stop-delay D] [--marker PATH]
//	    Serve HTTP (GET /version answers $AGENT_VERSION, GET /healthz is 200 once ready). The
//	    port is opened with SO_REUSEPORT so the two twins of a hot upgrade can share it in one
//	    pod. After the ready delay it writes the marker file (default /tmp/ready) in its own
//	    container filesystem. On SIGTERM or SIGINT it waits --stop-delay, then exits 0.
//	testagent check [--marker PATH]
//	    Exec readiness probe: exit 0 iff the marker exists.
//	testagent poststart [--marker PATH]
//	    postStart hook: writes PATH (default /tmp/poststart) and exits 0 at once.
//	testagent sleep [DURATION]
//	    Sleep until SIGTERM/SIGINT (or DURATION), then exit 0: the hot-upgrade "empty" image.
//
// If $AGENT_BROKEN is set, serve and sleep print it and exit 1 at once: a real crash loop.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: testagent serve|check|poststart|sleep [flags]")
		return 2
	}
	cmd, rest := args[0], args[1:]
	if reason := os.Getenv("AGENT_BROKEN"); reason != "" && (cmd == "serve" || cmd == "sleep") {
		fmt.Fprintf(stderr, "testagent %s: refusing to start: %s\n", version(), reason)
		return 1
	}
	switch cmd {
	case "serve":
		return serve(rest, stdout, stderr)
	case "check":
		return check(rest, stderr)
	case "poststart":
		return postStart(rest, stdout, stderr)
	case "sleep":
		return sleep(rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "testagent: unknown command %q (want serve, check, poststart or sleep)\n", cmd)
		return 2
	}
}

func version() string {
	if v := os.Getenv("AGENT_VERSION"); v != "" {
		return v
	}
	return "unknown"
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("testagent "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// signalled returns a context cancelled by SIGTERM or SIGINT.
func signalled() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// soReusePort is SO_REUSEPORT on Linux amd64 and arm64; package syscall does not export it and
// golang.org/x/sys would be this module's only dependency.
const soReusePort = 0xf

// listenReusePort opens a TCP listener with SO_REUSEPORT, so a second process may bind the
// same port in the same network namespace (the hot-upgrade twin) while the first still runs.
func listenReusePort(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var sockErr error
		if err := c.Control(func(fd uintptr) {
			sockErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
		}); err != nil {
			return err
		}
		return sockErr
	}}
	return lc.Listen(ctx, "tcp", addr)
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", stderr)
	port := fs.Int("port", 8080, "TCP port to serve HTTP on (all addresses)")
	readyDelay := fs.Duration("ready-delay", 0, "wait this long before writing the ready marker")
	stopDelay := fs.Duration("stop-delay", 0, "keep serving this long after SIGTERM")
	marker := fs.String("marker", "/tmp/ready", "ready marker file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signalled()
	defer stop()
	_ = os.Remove(*marker) // a restarted container keeps its filesystem: start not ready
	ln, err := listenReusePort(ctx, fmt.Sprintf(":%d", *port))
	if err != nil {
		fmt.Fprintf(stderr, "testagent %s: cannot listen on port %d: %v\n", version(), *port, err)
		return 1
	}
	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, version())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "testagent %s\n", version())
	})
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- server.Serve(ln) }()
	fmt.Fprintf(stdout, "testagent %s: serving on :%d, ready in %s\n", version(), *port, *readyDelay)

	select {
	case <-time.After(*readyDelay):
		if err := os.WriteFile(*marker, []byte(version()+"\n"), 0o644); err != nil {
			fmt.Fprintf(stderr, "testagent %s: cannot write ready marker %s: %v\n", version(), *marker, err)
			return 1
		}
		ready.Store(true)
		fmt.Fprintf(stdout, "testagent %s: ready (%s written)\n", version(), *marker)
	case <-ctx.Done():
	case err := <-served:
		fmt.Fprintf(stderr, "testagent %s: server stopped: %v\n", version(), err)
		return 1
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		fmt.Fprintf(stderr, "testagent %s: server stopped: %v\n", version(), err)
		return 1
	}
	fmt.Fprintf(stdout, "testagent %s: signalled, stopping in %s\n", version(), *stopDelay)
	time.Sleep(*stopDelay)
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintf(stderr, "testagent %s: shutdown: %v\n", version(), err)
	}
	fmt.Fprintf(stdout, "testagent %s: stopped\n", version())
	return 0
}

func check(args []string, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	marker := fs.String("marker", "/tmp/ready", "ready marker file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := os.Stat(*marker); err != nil {
		fmt.Fprintf(stderr, "not ready: %v\n", err)
		return 1
	}
	return 0
}

func postStart(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("poststart", stderr)
	marker := fs.String("marker", "/tmp/poststart", "file written when the hook runs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	stamp := time.Now().UTC().Format(time.RFC3339Nano)
	if err := os.WriteFile(*marker, []byte(stamp+"\n"), 0o644); err != nil {
		fmt.Fprintf(stderr, "poststart: cannot write %s: %v\n", *marker, err)
		return 1
	}
	fmt.Fprintf(stdout, "poststart: %s at %s\n", version(), stamp)
	return 0
}

func sleep(args []string, stdout, stderr io.Writer) int {
	var limit <-chan time.Time
	if len(args) > 1 {
		fmt.Fprintln(stderr, "usage: testagent sleep [DURATION]")
		return 2
	}
	if len(args) == 1 {
		d, err := time.ParseDuration(args[0])
		if err != nil {
			fmt.Fprintf(stderr, "testagent sleep: %v\n", err)
			return 2
		}
		limit = time.After(d)
	}
	ctx, stop := signalled()
	defer stop()
	fmt.Fprintf(stdout, "testagent %s: sleeping until signalled\n", version())
	select {
	case <-ctx.Done():
	case <-limit:
	}
	return 0
}
