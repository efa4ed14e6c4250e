package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/initiator"
)

// parseURL parses a LUN or portal URL and fills credentials from the environment.
func (g *globals) parseURL(raw string) (*iscsi.URL, error) {
	u, err := iscsi.ParseURL(raw)
	if err != nil {
		return nil, usagef("%v", err)
	}
	u.ApplyEnv(g.getenv)
	return u, nil
}

// options turns a URL and the global flags into initiator options.
func (g *globals) options(u *iscsi.URL) []initiator.Option {
	var opts []initiator.Option
	if g.initiatorName != "" {
		opts = append(opts, initiator.WithInitiatorName(g.initiatorName))
	}
	if g.logger != nil {
		opts = append(opts, initiator.WithLogger(g.logger))
	}
	if chap, ok := urlCHAP(u); ok {
		opts = append(opts, initiator.WithCHAP(chap))
	}
	if u.HeaderDigest {
		opts = append(opts, initiator.WithHeaderDigest(initiator.DigestRequireCRC32C))
	}
	if u.DataDigest {
		opts = append(opts, initiator.WithDataDigest(initiator.DigestRequireCRC32C))
	}
	return append(opts, g.session.options()...)
}

// urlCHAP returns the URL's credentials, if it has any. A command-line
// user connects to targets configured by others: accept what the target
// accepts (short secrets), as libiscsi does.
func urlCHAP(u *iscsi.URL) (iscsi.CHAP, bool) {
	if u.CHAP.User == "" && u.CHAP.Secret == "" {
		return iscsi.CHAP{}, false
	}
	c := u.CHAP
	c.AllowShortSecrets = true
	return c, true
}

// dial logs in to the target named by the URL.
func (g *globals) dial(ctx context.Context, u *iscsi.URL, extra ...initiator.Option) (*initiator.Session, error) {
	if u.TargetName == "" {
		return nil, usagef("URL %s names no target", u)
	}
	// Dial's errors name the target and portal ("iscsi: login to T at P:
	// ..."): wrapping them again would say it twice.
	s, err := initiator.Dial(ctx, u.Portal(), u.TargetName, append(g.options(u), extra...)...)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// openLUN logs in and opens the URL's LUN. The caller closes the session.
func (g *globals) openLUN(ctx context.Context, raw string, extra ...initiator.Option) (*initiator.Session, *initiator.LUN, error) {
	u, err := g.parseURL(raw)
	if err != nil {
		return nil, nil, err
	}
	if !u.HasLUN {
		return nil, nil, usagef("URL %s names no LUN (iscsi://host/iqn/LUN)", u)
	}
	s, err := g.dial(ctx, u, extra...)
	if err != nil {
		return nil, nil, err
	}
	l, err := s.LUN(ctx, u.LUN)
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("open LUN %d of %s: %w", u.LUN, u.TargetName, err)
	}
	return s, l, nil
}

func cmdDiscover(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("discover")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one portal URL: iscsictl discover iscsi://host[:port]")
	}
	u, err := g.parseURL(pos[0])
	if err != nil {
		return err
	}
	targets, err := initiator.Discover(ctx, u.Portal(), g.options(u)...)
	if err != nil {
		return err // it names the portal
	}
	if *asJSON {
		type portal struct {
			Address  string `json:"address"`
			Port     int    `json:"port"`
			GroupTag uint16 `json:"group_tag"`
		}
		type target struct {
			TargetName string   `json:"target_name"`
			Portals    []portal `json:"portals"`
		}
		out := make([]target, 0, len(targets))
		for _, t := range targets {
			jt := target{TargetName: t.TargetName, Portals: []portal{}}
			for _, p := range t.Portals {
				jt.Portals = append(jt.Portals, portal{p.Address, p.Port, p.GroupTag})
			}
			out = append(out, jt)
		}
		return writeJSON(g.stdout, out)
	}
	for _, t := range targets {
		if len(t.Portals) == 0 {
			fmt.Fprintf(g.stdout, "%s\n", t.TargetName)
		}
		for _, p := range t.Portals {
			fmt.Fprintf(g.stdout, "%s,%d %s\n", p, p.GroupTag, t.TargetName)
		}
	}
	return nil
}

// lunInfo is one row of `iscsictl luns`.
type lunInfo struct {
	LUN        uint64 `json:"lun"`
	Type       string `json:"type"`
	TypeCode   uint8  `json:"type_code"`
	Vendor     string `json:"vendor"`
	Product    string `json:"product"`
	BlockSize  int    `json:"block_size"`
	Blocks     int64  `json:"blocks"`
	SizeBytes  int64  `json:"size_bytes"`
	Error      string `json:"error,omitempty"`
	isBlockDev bool
}

func cmdLUNs(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("luns")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one target URL: iscsictl luns iscsi://host[:port]/iqn")
	}
	u, err := g.parseURL(pos[0])
	if err != nil {
		return err
	}
	s, err := g.dial(ctx, u)
	if err != nil {
		return err
	}
	defer s.Close()
	nums, err := s.ReportLUNs(ctx)
	if err != nil {
		return fmt.Errorf("REPORT LUNS on %s: %w", u.TargetName, err)
	}
	rows := make([]lunInfo, 0, len(nums))
	for _, n := range nums {
		row := lunInfo{LUN: n}
		inq, err := s.Inquiry(ctx, n)
		if err != nil {
			row.Error = err.Error()
			rows = append(rows, row)
			continue
		}
		row.Type, row.TypeCode = inq.Type.String(), uint8(inq.Type)
		row.Vendor, row.Product = inq.Vendor, inq.Product
		if l, err := s.LUN(ctx, n); err == nil {
			row.BlockSize = l.BlockSize()
			row.SizeBytes = l.Size()
			row.Blocks = l.Size() / int64(l.BlockSize())
		}
		rows = append(rows, row)
	}
	if *asJSON {
		return writeJSON(g.stdout, rows)
	}
	w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "LUN\tTYPE\tVENDOR\tPRODUCT\tBLOCK\tBLOCKS\tSIZE")
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(w, "%d\t?\t\t\t\t\t%s\n", r.LUN, r.Error)
			continue
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%d\t%d\n", r.LUN, r.Type, r.Vendor, r.Product, r.BlockSize, r.Blocks, r.SizeBytes)
	}
	return w.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// parseSize parses a byte count with an optional k/m/g/t suffix (powers of 1024).
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "b"), "i")
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult, t = 1<<10, t[:n-1]
		case 'm':
			mult, t = 1<<20, t[:n-1]
		case 'g':
			mult, t = 1<<30, t[:n-1]
		case 't':
			mult, t = 1<<40, t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// sizeFlag is a flag.Value for byte counts with suffixes.
type sizeFlag struct {
	n   int64
	set bool
}

func (f *sizeFlag) String() string { return strconv.FormatInt(f.n, 10) }
func (f *sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	f.n, f.set = n, true
	return nil
}

func cmdRead(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("read")
	var offset, length sizeFlag
	fs.Var(&offset, "offset", "start offset in bytes (block-aligned)")
	fs.Var(&length, "length", "bytes to read (default: to the end of the LUN)")
	out := fs.String("o", "", "output file (default stdout)")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one LUN URL")
	}
	s, l, err := g.openLUN(ctx, pos[0])
	if err != nil {
		return err
	}
	defer s.Close()
	n := l.Size() - offset.n
	if length.set {
		n = length.n
	}
	if offset.n < 0 || n < 0 || offset.n+n > l.Size() {
		return fmt.Errorf("read %d bytes at %d: beyond the end of the LUN (%d bytes)", n, offset.n, l.Size())
	}
	w := g.stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("create %s: %w", *out, err)
		}
		defer f.Close()
		w = f
	}
	if err := copyFromLUN(ctx, w, l, offset.n, n); err != nil {
		return err
	}
	if f, ok := w.(*os.File); ok && *out != "" {
		if err := f.Close(); err != nil {
			return fmt.Errorf("close %s: %w", *out, err)
		}
	}
	return nil
}

// copyFromLUN writes n bytes of the LUN at off to w, in order. The range may be
// unaligned: whole blocks around it are read and trimmed.
func copyFromLUN(ctx context.Context, w io.Writer, l *initiator.LUN, off, n int64) error {
	bs := int64(l.BlockSize())
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	for n > 0 {
		start := off - off%bs
		end := min(off+n, start+chunk)
		aEnd := (end + bs - 1) / bs * bs
		if aEnd > l.Size() {
			aEnd = l.Size()
		}
		b := buf[:aEnd-start]
		if _, err := l.ReadAtContext(ctx, b, start); err != nil {
			return fmt.Errorf("read LUN %d at %d: %w", l.Number(), start, err)
		}
		piece := b[off-start : end-start]
		if _, err := w.Write(piece); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		off += int64(len(piece))
		n -= int64(len(piece))
	}
	return nil
}

func cmdWrite(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("write")
	var offset sizeFlag
	fs.Var(&offset, "offset", "start offset in bytes (block-aligned)")
	in := fs.String("i", "", "input file (default stdin)")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one LUN URL")
	}
	r := g.stdin
	if *in != "" {
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("open %s: %w", *in, err)
		}
		defer f.Close()
		r = f
	}
	s, l, err := g.openLUN(ctx, pos[0])
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := copyToLUN(ctx, l, r, offset.n); err != nil {
		return err
	}
	if err := l.SynchronizeCache(ctx); err != nil {
		return fmt.Errorf("SYNCHRONIZE CACHE on LUN %d: %w", l.Number(), err)
	}
	return nil
}

// copyToLUN writes everything r yields to the LUN at off, in 1 MiB pieces.
// off must be block-aligned; a partial last block is merged with what the
// LUN holds (read-modify-write) so no byte past the input changes.
func copyToLUN(ctx context.Context, l *initiator.LUN, r io.Reader, off int64) (int64, error) {
	bs := int64(l.BlockSize())
	if off%bs != 0 {
		return 0, fmt.Errorf("offset %d is not a multiple of the block size %d", off, bs)
	}
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	var total int64
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if off+int64(n) > l.Size() {
				return total, fmt.Errorf("write at %d: input runs past the end of the LUN (%d bytes)", off, l.Size())
			}
			whole := int64(n) - int64(n)%bs
			if whole > 0 {
				if _, err := l.WriteAtContext(ctx, buf[:whole], off); err != nil {
					return total, fmt.Errorf("write LUN %d at %d: %w", l.Number(), off, err)
				}
			}
			if tail := int64(n) - whole; tail > 0 {
				blk := make([]byte, bs)
				if _, err := l.ReadAtContext(ctx, blk, off+whole); err != nil {
					return total, fmt.Errorf("read LUN %d at %d: %w", l.Number(), off+whole, err)
				}
				copy(blk, buf[whole:n])
				if _, err := l.WriteAtContext(ctx, blk, off+whole); err != nil {
					return total, fmt.Errorf("write LUN %d at %d: %w", l.Number(), off+whole, err)
				}
			}
			off += int64(n)
			total += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return total, nil
		}
		if rerr != nil {
			return total, fmt.Errorf("read input: %w", rerr)
		}
	}
}
