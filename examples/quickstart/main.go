// Command quickstart is `make demo`: it shows the library's main job from end
// to end and verifies it.
//
// With no arguments it starts an in-process target (initiator/iscsitest) with
// a 64 MiB LUN behind mutual CHAP, then discovers it, logs in with CHAP,
// writes a few MiB of random data, reads it back, verifies it and prints a
// short report. Nothing needs root or a network.
//
// Given a LUN URL in libiscsi's form,
//
//	quickstart iscsi://[user[%secret]@]host[:port]/target-iqn/lun
//
// it does the same against a real target. Because that LUN may hold data, it
// first saves the region it is about to write and writes it back afterwards
// (stop it with Ctrl-C only between steps you can afford to lose).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/initiator/iscsitest"
)

func main() {
	size := flag.Int("size", 8<<20, "bytes to write and verify")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: quickstart [--size BYTES] [iscsi://[user[%%secret]@]host[:port]/iqn/lun]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch flag.NArg() {
	case 0:
		err = demoEmbedded(ctx, os.Stdout, *size)
	case 1:
		err = demoURL(ctx, os.Stdout, flag.Arg(0), *size)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "quickstart: %v\n", err)
		os.Exit(1)
	}
}

// Demo credentials of the embedded target (mutual CHAP).
const (
	demoIQN          = "iqn.2026-11.org.gosan.demo:disk1"
	demoUser         = "demo-initiator"
	demoSecret       = "demo-initiator-secret"
	demoTargetUser   = "demo-target"
	demoTargetSecret = "demo-target-secret!"
)

// demoEmbedded runs the demo against an in-process target.
func demoEmbedded(ctx context.Context, out io.Writer, size int) error {
	srv, err := iscsitest.NewServer(iscsitest.Config{Targets: []iscsitest.Target{{
		Name: demoIQN,
		LUNs: []iscsitest.LUN{{Number: 1, Blocks: 64 << 20 / 512, BlockSize: 512}},
		CHAP: &iscsitest.CHAPConfig{User: demoUser, Secret: demoSecret,
			TargetUser: demoTargetUser, TargetSecret: demoTargetSecret},
	}}})
	if err != nil {
		return fmt.Errorf("start the in-process target: %w", err)
	}
	defer srv.Close()
	u := &iscsi.URL{Host: "127.0.0.1", Port: srv.Port(), TargetName: demoIQN, LUN: 1, HasLUN: true,
		CHAP: iscsi.CHAP{User: demoUser, Secret: demoSecret, TargetUser: demoTargetUser, TargetSecret: demoTargetSecret}}
	fmt.Fprintf(out, "target     in-process iscsitest target at %s (no root, no network)\n", u.Portal())
	written, err := run(ctx, out, u, size, false)
	if err != nil {
		return err
	}
	// The target's memory is the ground truth: check it without the initiator.
	held, err := srv.LUNData(demoIQN, 1)
	if err != nil {
		return fmt.Errorf("read the target's memory: %w", err)
	}
	if !bytes.Equal(held[:len(written)], written) {
		return errors.New("verify: the target's memory differs from what was written")
	}
	fmt.Fprintf(out, "target     memory holds the same %s (checked inside the target)\n", bytesText(int64(len(written))))
	return nil
}

func demoURL(ctx context.Context, out io.Writer, raw string, size int) error {
	u, err := iscsi.ParseURL(raw)
	if err != nil {
		return err
	}
	if u.TargetName == "" || !u.HasLUN {
		return fmt.Errorf("%s: want iscsi://host[:port]/target-iqn/lun", u)
	}
	u.ApplyEnv(os.Getenv)
	fmt.Fprintf(out, "target     %s\n", u)
	_, err = run(ctx, out, u, size, true)
	return err
}

// run is the demo proper: discover, log in, write, read back, verify.
// It returns the data it wrote.
func run(ctx context.Context, out io.Writer, u *iscsi.URL, size int, restore bool) ([]byte, error) {
	var opts []initiator.Option
	auth := "none"
	if u.CHAP.User != "" {
		chap := u.CHAP
		chap.AllowShortSecrets = true
		opts = append(opts, initiator.WithCHAP(chap))
		auth = "CHAP"
		if chap.Mutual() {
			auth = "mutual CHAP"
		}
	}

	t0 := time.Now()
	// Discovery sessions usually need no CHAP (tgtd and LIO ask for it only
	// when configured to); fall back to the session's credentials if refused.
	targets, err := initiator.Discover(ctx, u.Portal())
	if err != nil && len(opts) > 0 {
		targets, err = initiator.Discover(ctx, u.Portal(), opts...)
	}
	if err != nil {
		return nil, err // it names the portal
	}
	found := false
	for _, t := range targets {
		found = found || t.TargetName == u.TargetName
	}
	fmt.Fprintf(out, "discovery  %d target(s) in %s; %s %s\n", len(targets), since(t0), u.TargetName, map[bool]string{true: "listed", false: "NOT listed (logging in anyway)"}[found])

	t0 = time.Now()
	sess, err := initiator.Dial(ctx, u.Portal(), u.TargetName, opts...)
	if err != nil {
		return nil, err // "iscsi: login to T at P: ..."
	}
	defer sess.Close()
	fmt.Fprintf(out, "login      %s in %s (TSIH %d)\n", auth, since(t0), sess.TSIH())

	lun, err := sess.LUN(ctx, u.LUN)
	if err != nil {
		return nil, err
	}
	inq := lun.Inquiry()
	fmt.Fprintf(out, "LUN %-6d %s, %d-byte blocks, %s %s\n", lun.Number(), bytesText(lun.Size()), lun.BlockSize(), inq.Vendor, inq.Product)

	size -= size % lun.BlockSize()
	if int64(size) > lun.Size() {
		size = int(lun.Size())
	}
	if size <= 0 {
		return nil, errors.New("nothing to write: --size is smaller than one block")
	}
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		return nil, err
	}
	var saved []byte
	if restore {
		saved = make([]byte, size)
		if _, err := lun.ReadAtContext(ctx, saved, 0); err != nil {
			return nil, fmt.Errorf("save the region to be written: %w", err)
		}
	}

	t0 = time.Now()
	if _, err := lun.WriteAtContext(ctx, data, 0); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	if err := lun.SynchronizeCache(ctx); err != nil {
		return nil, fmt.Errorf("synchronize cache: %w", err)
	}
	fmt.Fprintf(out, "written    %s of random data in %s (%s)\n", bytesText(int64(size)), since(t0), rate(size, time.Since(t0)))

	back := make([]byte, size)
	t0 = time.Now()
	if _, err := lun.ReadAtContext(ctx, back, 0); err != nil {
		return nil, fmt.Errorf("read back: %w", err)
	}
	fmt.Fprintf(out, "read back  %s in %s (%s)\n", bytesText(int64(size)), since(t0), rate(size, time.Since(t0)))
	if !bytes.Equal(data, back) {
		i := 0
		for i < size && data[i] == back[i] {
			i++
		}
		return nil, fmt.Errorf("verify: first difference at byte %d", i)
	}
	if restore {
		if _, err := lun.WriteAtContext(ctx, saved, 0); err != nil {
			return nil, fmt.Errorf("restore the original contents: %w", err)
		}
		if err := lun.SynchronizeCache(ctx); err != nil {
			return nil, fmt.Errorf("synchronize cache after restore: %w", err)
		}
		fmt.Fprintf(out, "restored   the original %s\n", bytesText(int64(size)))
	}
	if err := sess.Close(); err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	fmt.Fprintf(out, "verified   OK: every byte read back equals what was written; logged out\n")
	return data, nil
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Microsecond).String() }

func rate(n int, d time.Duration) string {
	return fmt.Sprintf("%.0f MiB/s", float64(n)/(1<<20)/max(d.Seconds(), 1e-9))
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
