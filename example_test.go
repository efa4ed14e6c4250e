package iscsi_test

import (
	"errors"
	"fmt"

	"github.com/gosan/iscsi"
)

// A libiscsi URL carries the portal, target, LUN and credentials; the
// secrets never print.
func ExampleParseURL() {
	u, err := iscsi.ParseURL("iscsi://alice%s3cret-s3cret@192.0.2.10/iqn.2026-11.org.example:disk1/1?header_digest=crc32c")
	if err != nil {
		panic(err)
	}
	u.ApplyEnv(func(key string) string {
		if key == "LIBISCSI_CHAP_TARGET_PASSWORD" {
			return "the-target-secret"
		}
		return ""
	})
	fmt.Println(u)
	fmt.Println(u.Portal(), u.TargetName, u.LUN, u.HeaderDigest)
	fmt.Println(u.CHAP.User, u.CHAP.Mutual())
	// Output:
	// iscsi://alice%xxxxx@192.0.2.10:3260/iqn.2026-11.org.example:disk1/1
	// 192.0.2.10:3260 iqn.2026-11.org.example:disk1 1 true
	// alice true
}

// CHAP credentials format without their secrets, whatever the verb.
func ExampleCHAP() {
	c := iscsi.CHAP{User: "node1", Secret: "twelve+chars", Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPSHA256, iscsi.CHAPMD5}}
	fmt.Println(c)
	fmt.Println(c.Validate())
	fmt.Println(iscsi.CHAP{User: "node1", Secret: "short"}.Validate())
	// Output:
	// CHAP{User:"node1" Secret:<redacted> TargetUser:"" TargetSecret: Algorithms:[SHA256 MD5] AllowShortSecrets:false}
	// <nil>
	// invalid login configuration: CHAP secret is 5 bytes, shorter than 12 (set AllowShortSecrets to accept)
}

// A refused login is branched on with errors.Is, whichever layer returned
// it (initiator.Dial, initiator.Discover, blockdev's Attach).
func ExampleLoginError() {
	var err error = fmt.Errorf("iscsi: login to %s at %s: %w", "iqn.2026-11.org.example:disk1", "192.0.2.10:3260",
		&iscsi.LoginError{Class: 2, Detail: 1, Stage: iscsi.StageSecurity})
	fmt.Println(errors.Is(err, iscsi.ErrAuthentication), errors.Is(err, iscsi.ErrTargetNotFound))
	var le *iscsi.LoginError
	if errors.As(err, &le) {
		fmt.Printf("status %#04x, retryable %v\n", le.Status(), le.Retryable())
	}
	fmt.Println(err)
	// Output:
	// true false
	// status 0x0201, retryable false
	// iscsi: login to iqn.2026-11.org.example:disk1 at 192.0.2.10:3260: authentication failure (status 0x0201, security stage)
}

// Every package logs in with the host's one initiator name unless told
// otherwise.
func ExampleDefaultInitiatorName() {
	name := iscsi.DefaultInitiatorName()
	fmt.Println(name != "")
	// Output: true
}
