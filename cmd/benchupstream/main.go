// Command benchupstream is the upstream of make bench: a loopback DNS
// server (UDP and TCP) that answers A and AAAA for every name, so the
// servers under test all forward to the same, always-answering upstream.
// With -stats it also serves its query count over HTTP (GET /queries), so
// the benchmark can tell cache hits from forwarded queries.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5300", "serve DNS (UDP and TCP) on `ADDR`")
	stats := flag.String("stats", "", "serve the query count over HTTP on `ADDR` (GET /queries)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ready := func(dnsAddr, _ string) { log.Printf("benchupstream: answering every name on %s", dnsAddr) }
	if err := run(ctx, *listen, *stats, ready); err != nil {
		log.Fatalf("benchupstream: %v", err)
	}
}

// run serves until ctx ends, calling ready with the bound addresses once
// it answers.
func run(ctx context.Context, listen, stats string, ready func(dnsAddr, statsAddr string)) error {
	srv, err := dnstest.Start(dnstest.Options{Addr: listen, CatchAll: true})
	if err != nil {
		return err
	}
	defer srv.Close()
	statsAddr := ""
	if stats != "" {
		ln, err := net.Listen("tcp", stats)
		if err != nil {
			return err
		}
		statsAddr = ln.Addr().String()
		mux := http.NewServeMux()
		mux.HandleFunc("GET /queries", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, srv.Queries())
		})
		hs := &http.Server{Handler: mux}
		go func() {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Printf("benchupstream: stats: %v", err)
			}
		}()
		defer hs.Close()
	}
	ready(srv.Addr, statsAddr)
	<-ctx.Done()
	return nil
}
