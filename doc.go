// Package iscsi holds the vocabulary every layer of this module shares: the
// CHAP credentials of a login ([CHAP]), the host's default initiator name
// ([DefaultInitiatorName]), the login failures a target reports
// ([ErrAuthentication], [*LoginError], [*RedirectError], ...), the
// operational parameters a login agreed on ([Negotiated]) and libiscsi's
// URL form ([ParseURL]).
//
// The userspace initiator (package initiator) and the kernel binding
// (package blockdev) both log in with the same engine and speak these
// types, so one host has one identity, one set of credentials fits both,
// and a caller branches on a refused login the same way whichever path it
// took:
//
//	sess, err := initiator.Dial(ctx, portal, targetName, initiator.WithCHAP(iscsi.CHAP{User: u, Secret: s}))
//	if errors.Is(err, iscsi.ErrAuthentication) { ... }
//
//	disk, err := kernel.Attach(ctx, blockdev.Spec{Portal: portal, TargetName: targetName, LUN: 1, CHAP: &iscsi.CHAP{User: u, Secret: s}})
//	if errors.Is(err, iscsi.ErrAuthentication) { ... }
//
// Secrets never appear in logs, errors or formatted output: CHAP and URL
// format themselves with the secrets replaced.
package iscsi
