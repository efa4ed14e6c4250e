//go:build linux

package tgtd

import (
	"context"
	"fmt"
	"testing"
)

// IQNPrefix is the prefix of every fixture name.
const IQNPrefix = "iqn.2026-11.org.gosan.test:"

// Fixture target ids.
const (
	TIDPlain    = 1
	TIDMultiLUN = 2
	TIDCHAP     = 3
	TIDMutual   = 4
	TIDACL      = 5
	TIDNull     = 6
)

// Fixture sizes.
const (
	PlainSize    = 64 << 20
	MultiLUNSize = 16 << 20
	CHAPSize     = 16 << 20
	ACLSize      = 16 << 20
	NullSize     = 1 << 40
)

// FixtureLUN is one LUN of a fixture target.
type FixtureLUN struct {
	LUN       uint64
	Size      int64
	BlockSize int
	Path      string // backing file (its bytes are the ground truth); "" for null LUNs
}

// FixtureTarget is one target of the standard set.
type FixtureTarget struct {
	TID  int
	IQN  string
	LUNs []FixtureLUN
	// One-way CHAP: the credentials the initiator presents.
	User, Secret string
	// Mutual CHAP: the target's own name and secret.
	TargetUser, TargetSecret string
}

// String hides secrets.
func (t FixtureTarget) String() string {
	return fmt.Sprintf("{tid %d %s luns %d user %q target user %q}", t.TID, t.IQN, len(t.LUNs), t.User, t.TargetUser)
}

// GoString hides secrets from %#v.
func (t FixtureTarget) GoString() string { return "tgtd.FixtureTarget" + t.String() }

// Fixture is the standard set of targets the integration suites log in to.
type Fixture struct {
	Portal string
	// Plain: tid 1, LUN 1 of 64 MiB, open to all.
	Plain FixtureTarget
	// MultiLUN: LUN 1 with 512-byte blocks, LUN 2 with 4096-byte blocks.
	MultiLUN FixtureTarget
	// CHAP: one-way CHAP (User/Secret).
	CHAP FixtureTarget
	// MutualCHAP: User/Secret for the target to check us, TargetUser/TargetSecret
	// for us to check the target.
	MutualCHAP FixtureTarget
	// ACL: only AllowedInitiator may log in.
	ACL FixtureTarget
	// Null: a 1 TiB LUN with no storage (reads zeros, drops writes).
	Null FixtureTarget
	// AllowedInitiator is the one initiator name the ACL target admits.
	AllowedInitiator string
}

// String hides secrets.
func (f *Fixture) String() string {
	return fmt.Sprintf("{portal %s plain %v multi %v chap %v mutual %v acl %v null %v}",
		f.Portal, f.Plain, f.MultiLUN, f.CHAP, f.MutualCHAP, f.ACL, f.Null)
}

// Targets lists the fixture targets in tid order.
func (f *Fixture) Targets() []FixtureTarget {
	return []FixtureTarget{f.Plain, f.MultiLUN, f.CHAP, f.MutualCHAP, f.ACL, f.Null}
}

// StartFixture starts tgtd for a test (Start) and configures the fixture.
func StartFixture(t testing.TB, opts ...Option) (*Server, *Fixture) {
	t.Helper()
	s := Start(t, opts...)
	f, err := s.SetupFixture(context.Background(), "")
	if err != nil {
		t.Fatalf("tgtd fixture: %v", err)
	}
	return s, f
}

// SetupFixture creates the standard targets (tids 1..6) with sparse backing
// files in dir (default s.Dir()).
func (s *Server) SetupFixture(ctx context.Context, dir string) (*Fixture, error) {
	if dir == "" {
		dir = s.dir
	}
	f := &Fixture{
		Portal:           s.Portal(),
		AllowedInitiator: IQNPrefix + "allowed-initiator",
		Plain:            FixtureTarget{TID: TIDPlain, IQN: IQNPrefix + "plain"},
		MultiLUN:         FixtureTarget{TID: TIDMultiLUN, IQN: IQNPrefix + "multilun"},
		CHAP: FixtureTarget{TID: TIDCHAP, IQN: IQNPrefix + "chap",
			User: "gosan-chap-user", Secret: "chap-secret-0123"},
		MutualCHAP: FixtureTarget{TID: TIDMutual, IQN: IQNPrefix + "mutual",
			User: "gosan-mutual-user", Secret: "mutual-secret-0123",
			TargetUser: "gosan-mutual-target", TargetSecret: "target-secret-0123"},
		ACL:  FixtureTarget{TID: TIDACL, IQN: IQNPrefix + "acl"},
		Null: FixtureTarget{TID: TIDNull, IQN: IQNPrefix + "null"},
	}
	file := func(size int64, bs int) (FixtureLUN, error) {
		p, err := CreateBackingFile(dir, size)
		return FixtureLUN{LUN: 1, Size: size, BlockSize: bs, Path: p}, err
	}
	var err error
	add := func(t *FixtureTarget, size int64, bs int) {
		if err != nil {
			return
		}
		var l FixtureLUN
		if l, err = file(size, bs); err != nil {
			return
		}
		l.LUN = uint64(len(t.LUNs) + 1)
		t.LUNs = append(t.LUNs, l)
	}
	add(&f.Plain, PlainSize, 512)
	add(&f.MultiLUN, MultiLUNSize, 512)
	add(&f.MultiLUN, MultiLUNSize, 4096)
	add(&f.CHAP, CHAPSize, 512)
	add(&f.MutualCHAP, CHAPSize, 512)
	add(&f.ACL, ACLSize, 512)
	if err != nil {
		return nil, err
	}
	f.Null.LUNs = []FixtureLUN{{LUN: 1, Size: NullSize, BlockSize: 512}}

	for _, t := range f.Targets() {
		if err := s.NewTarget(ctx, t.TID, t.IQN); err != nil {
			return nil, err
		}
		for _, l := range t.LUNs {
			if l.Path == "" {
				err = s.AddNullLUN(ctx, t.TID, int(l.LUN), l.Size)
			} else {
				bs := l.BlockSize
				if bs == 512 {
					bs = 0 // tgtd's default; keeps the command line as users write it
				}
				err = s.AddLUN(ctx, t.TID, int(l.LUN), l.Path, bs)
			}
			if err != nil {
				return nil, err
			}
		}
		if t.TID == TIDACL {
			err = s.BindInitiatorName(ctx, t.TID, f.AllowedInitiator)
		} else {
			err = s.BindAddress(ctx, t.TID, "ALL")
		}
		if err != nil {
			return nil, err
		}
		if t.User != "" {
			if err := s.NewAccount(ctx, t.User, t.Secret); err != nil {
				return nil, err
			}
			if err := s.BindAccount(ctx, t.TID, t.User, false); err != nil {
				return nil, err
			}
		}
		if t.TargetUser != "" {
			if err := s.NewAccount(ctx, t.TargetUser, t.TargetSecret); err != nil {
				return nil, err
			}
			if err := s.BindAccount(ctx, t.TID, t.TargetUser, true); err != nil {
				return nil, err
			}
		}
	}
	return f, nil
}
